"""Tiny end-to-end run: dataset -> train (+resume) -> export (ONNX parity) ->
evaluate JSON -> explain. Real torch, real onnxruntime, a few seconds."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from streamwatch import CLASS_NAMES  # noqa: E402
from streamwatch.model.preprocess import Geometry, make_views  # noqa: E402
from streamwatch.model.runtime import Classifier  # noqa: E402
from streamwatch.train import commands  # noqa: E402
from streamwatch.train.dataset import build_dataset  # noqa: E402

GEOM = Geometry(size=32, tiles=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    src = root / "footage" / "stills"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(src / f"s{chr(97 + i)}.png"), img)
    data = root / "data"
    build_dataset(root / "footage", data, seed=1, per_class={"train": 4, "val": 1, "test": 2}, workers=1, progress=False)
    out = root / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--variant", "eca_1", "--size", "32", "--tiles", "1",
            "--epochs", "1", "--batch-size", "8", "--warmup-steps", "2", "--threads", "1", "--workers", "1", "--quiet"]
    assert commands.main(args) == 0
    args[args.index("--epochs") + 1] = "2"
    assert commands.main(args) == 0  # resumes from last.pt, runs epoch 2 only
    onnx_path, pt_path = root / "model.onnx", root / "model.pt"
    assert commands.main(["export", "--checkpoint", str(out / "last.pt"), "--out", str(onnx_path), "--state-dict", str(pt_path),
                          "--data", str(data), "--variant", "eca_1", "--size", "32", "--tiles", "1"]) == 0
    return {"root": root, "data": data, "out": out, "onnx": onnx_path, "pt": pt_path}


def test_training_artifacts_and_resume(run):
    out = run["out"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert (out / "curves.png").stat().st_size > 1000
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 2
    sd = torch.load(run["pt"], map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())


def test_export_round_trip_torch_equals_onnx(run):
    from streamwatch.train.export import load_model

    model = load_model(run["pt"], "eca_1", GEOM)
    clf = Classifier(run["onnx"])
    assert clf.geometry == GEOM and clf.classes == CLASS_NAMES and clf.variant == "eca_1"
    frames = [cv2.imread(str(p)) for p in sorted((run["data"] / "test").rglob("*.jpg"))]
    views = np.stack([make_views(f, GEOM) for f in frames])
    with torch.no_grad():
        pt = torch.softmax(model(torch.from_numpy(views)), 1).numpy()
    ox = clf.predict(frames)
    assert ox.shape == (len(frames), 8)
    np.testing.assert_allclose(ox.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pt, ox, atol=1e-4)
    assert (pt.argmax(1) == ox.argmax(1)).all()
    meta = clf.metadata
    assert json.loads(meta["streamwatch.training_data"])["seed"] == 1


def test_onnx_probabilities_equal_torch_on_cached_views(run):
    """The fusion's fitting rows get the network's probabilities from onnxruntime; they must be
    torch's (same argmax, within 1e-5), batch boundaries included."""
    from streamwatch.train.export import load_model
    from streamwatch.train.onnx_predict import onnx_probabilities
    from streamwatch.train.trainer import predict_arrays, views_cache

    model = load_model(run["pt"], "eca_1", GEOM)
    views, _ = views_cache(run["data"] / "train", GEOM, workers=1, progress=False)
    pt = predict_arrays(model, views)
    ox = onnx_probabilities(model, views, GEOM, threads=1, batch=5)  # 32 rows: a partial last batch
    assert ox.shape == pt.shape == (len(views), 8) and ox.dtype == np.float32
    np.testing.assert_allclose(ox, pt, atol=1e-5)
    assert (ox.argmax(1) == pt.argmax(1)).all()
    assert onnx_probabilities(model, views[:0], GEOM).shape == (0, 8)


def test_evaluate_json_schema(run, capsys):
    assert commands.main(["evaluate", "--data", str(run["data"] / "test"), "--model", str(run["onnx"]), "--json",
                          "--plot", str(run["root"] / "conf.png")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"accuracy", "per_class", "confusion", "false_alarm_rate"}
    assert set(res["per_class"]) == set(CLASS_NAMES)
    assert all(set(v) == {"accuracy", "n"} and v["n"] == 2 for v in res["per_class"].values())
    conf = np.array(res["confusion"])
    assert conf.shape == (8, 8) and conf.sum() == 16 and (conf.sum(1) == 2).all()
    assert res["accuracy"] == pytest.approx(np.trace(conf) / 16)
    assert res["false_alarm_rate"] == pytest.approx(1 - conf[0, 0] / 2)
    assert (run["root"] / "conf.png").stat().st_size > 1000


def test_evaluate_writes_per_image_predictions_that_add_up_to_the_confusion(run, capsys):
    csv_path = run["root"] / "predictions.csv"
    assert commands.main(["evaluate", "--data", str(run["data"] / "test"), "--model", str(run["onnx"]), "--json",
                          "--predictions", str(csv_path)]) == 0
    conf = np.array(json.loads(capsys.readouterr().out)["confusion"])
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 16 and {Path(r["file"]).parent.name for r in rows} == set(CLASS_NAMES)
    counted = np.zeros((8, 8), int)
    for r in rows:
        assert r["true"] == Path(r["file"]).parent.name
        probs = np.array([float(r[c]) for c in CLASS_NAMES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-3)
        assert r["predicted"] == CLASS_NAMES[int(probs.argmax())] and float(r["confidence"]) == probs.max()
        counted[CLASS_NAMES.index(r["true"]), CLASS_NAMES.index(r["predicted"])] += 1
    assert (counted == conf).all()
    assert commands.main(["evaluate", "--data", str(run["data"] / "test"), "--classical", "--predictions",
                          str(csv_path)]) == 2


def test_evaluate_subset_of_classes_and_table(run, tmp_path, capsys):
    import shutil

    for c in ("blurred", "salt_pepper"):
        shutil.copytree(run["data"] / "test" / c, tmp_path / c)
    assert commands.main(["evaluate", "--data", str(tmp_path), "--model", str(run["onnx"]), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["per_class"]) == {"blurred", "salt_pepper"}
    assert len(res["confusion"]) == 8 and res["false_alarm_rate"] is None
    assert commands.main(["evaluate", "--data", str(tmp_path), "--model", str(run["onnx"]), "--quiet"]) == 0
    assert "salt_pepper" in capsys.readouterr().out
    # the torch checkpoint gives the same numbers
    assert commands.main(["evaluate", "--data", str(tmp_path), "--model", str(run["pt"]), "--json",
                          "--size", "32", "--tiles", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == res


def test_evaluate_reports_a_bad_model_cleanly(run, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 20)
    assert commands.main(["evaluate", "--data", str(run["data"] / "test"), "--model", str(bad), "--json"]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_explain_writes_an_overlay(run, tmp_path, capsys):
    img = sorted((run["data"] / "test" / "frozen").glob("*.jpg"))[0]
    out = tmp_path / "cam.png"
    assert commands.main(["explain", str(img), "--out", str(out), "--model", str(run["pt"]), "--size", "32", "--tiles", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["predicted"] in CLASS_NAMES and 0 < res["confidence"] <= 1
    pic = cv2.imread(str(out))
    base = cv2.imread(str(img))
    assert pic.shape[1] == base.shape[1] and pic.shape[0] > base.shape[0]  # overlay + caption band


def test_export_with_fusion_fitted_on_training_and_validation(run, tmp_path, capsys):
    """--fuse-on (repeatable) stores a fusion fitted on the given splits; evaluate uses it
    unless --no-fusion, which gives exactly the network alone."""
    fused_path = tmp_path / "fused.onnx"
    assert commands.main(["export", "--checkpoint", str(run["out"] / "last.pt"), "--out", str(fused_path),
                          "--fuse-on", str(run["data"] / "train"), "--fuse-on", str(run["data"] / "val"),
                          "--variant", "eca_1", "--size", "32", "--tiles", "1", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])["fusion"]
    expected = sum(len(list((run["data"] / split).rglob("*.jpg"))) for split in ("train", "val"))
    assert report["n"] == expected and 0 <= report["accuracy_fused"] <= 1 and report["hidden"] > 0
    fused = Classifier(fused_path)
    assert fused.fused and not Classifier(run["onnx"]).fused
    # Same network, different predictions: the version must differ (payloads name models by it).
    assert fused.version != Classifier(run["onnx"]).version
    assert report["network_dropout"] == 0.5
    assert fused._fusion.hidden_weights is not None  # the default fusion has a hidden layer
    test_dir = str(run["data"] / "test")
    assert commands.main(["evaluate", "--data", test_dir, "--model", str(fused_path), "--json", "--no-fusion"]) == 0
    network_only = json.loads(capsys.readouterr().out)
    assert commands.main(["evaluate", "--data", test_dir, "--model", str(run["onnx"]), "--json"]) == 0
    assert network_only == json.loads(capsys.readouterr().out)
    assert commands.main(["evaluate", "--data", test_dir, "--model", str(fused_path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"accuracy", "per_class", "confusion", "false_alarm_rate"}


def test_second_export_reuses_the_network_predictions_and_averages_fusion_fits(run, tmp_path, capsys):
    """The network's probabilities on a --fuse-on folder are cached by weights digest; an
    export of the same checkpoint with another fusion setting reuses them, and
    --fusion-members N ships the average of N fits as one N x wider hidden layer."""
    args = ["export", "--checkpoint", str(run["out"] / "last.pt"), "--fuse-on", str(run["data"] / "train"),
            "--variant", "eca_1", "--size", "32", "--tiles", "1", "--threads", "1", "--fusion-hidden", "8"]
    assert commands.main([*args, "--out", str(tmp_path / "one.onnx"), "--fusion-members", "1"]) == 0
    capsys.readouterr()
    cached = sorted((run["data"] / ".cache").glob("train_*_probs_*.npy"))
    cached = [c for c in cached if not c.name.endswith(".labels.npy")]
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert commands.main([*args, "--out", str(tmp_path / "three.onnx"), "--fusion-members", "3"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])["fusion"]
    assert report["members"] == 3
    assert cached[0].stat().st_mtime_ns == stamp  # read, not recomputed
    one, three = Classifier(tmp_path / "one.onnx"), Classifier(tmp_path / "three.onnx")
    assert one._fusion.hidden_weights.shape[1] == 8 and three._fusion.hidden_weights.shape[1] == 24
    # member 0 is the single fit (seed 0): its hidden units are the first 8 of the ensemble's
    np.testing.assert_allclose(three._fusion.hidden_weights[:, :8], one._fusion.hidden_weights, atol=1e-6)
    assert commands.main([*args, "--out", str(tmp_path / "bad.onnx"), "--fusion-members", "2",
                          "--fusion-hidden", "0"]) == 2
    assert "--fusion-hidden" in capsys.readouterr().err and not (tmp_path / "bad.onnx").exists()
