"""onnxruntime Classifier: the shipped model, and clear errors for bad files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.model.runtime import Classifier, ModelLoadError, default_model_path

ASSETS = Path(__file__).resolve().parents[1] / "streamwatch" / "assets"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
shipped = pytest.mark.skipif(not (ASSETS / "model.onnx").exists(), reason="no shipped model yet")


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as e:
        Classifier(tmp_path / "nope.onnx")
    assert "nope.onnx" in str(e.value)


def test_directory_and_empty_and_garbage(tmp_path):
    with pytest.raises(ModelLoadError, match="not a file"):
        Classifier(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="truncated or empty"):
        Classifier(empty)
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is a YAML file, not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="junk.onnx.*not a loadable ONNX"):
        Classifier(junk)


@shipped
def test_truncated_shipped_model(tmp_path):
    blob = (ASSETS / "model.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        Classifier(cut)


def _strip_or_change_metadata(src: Path, dst: Path, change: dict | None) -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    if change is not None:
        meta.update(change)
        for k, v in meta.items():
            p = proto.metadata_props.add()
            p.key, p.value = k, v
    onnx.save(proto, str(dst))


@shipped
@pytest.mark.parametrize("change,message", [
    (None, "lacks streamwatch metadata"),
    ({"streamwatch.classes": json.dumps(list(reversed(CLASS_NAMES)))}, "do not match"),
    ({"streamwatch.classes": "normal,frozen"}, "not a JSON list"),
    ({"streamwatch.geometry": json.dumps({"size": 64, "tiles": 2})}, "does not match geometry"),
    ({"streamwatch.geometry": "{}"}, "bad input geometry"),
])
def test_wrong_metadata(tmp_path, change, message):
    dst = tmp_path / "meta.onnx"
    _strip_or_change_metadata(ASSETS / "model.onnx", dst, change)
    with pytest.raises(ModelLoadError, match=message):
        Classifier(dst)


def test_default_path_is_the_packaged_asset():
    assert default_model_path() == ASSETS / "model.onnx" or default_model_path().name == "model.onnx"


@shipped
def test_shipped_model_predicts_probabilities_for_any_resolution():
    clf = Classifier(threads=1)
    assert clf.classes == CLASS_NAMES
    assert clf.version and len(clf.sha256) == 64 and clf.path.name == "model.onnx"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(1080, 1920, 3), (720, 1280, 3), (288, 352, 3), (144, 176, 3)]]
    p = clf.predict(frames)
    assert p.shape == (4, 8) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert clf.predict([]).shape == (0, 8)
    # predict = views -> network (-> fusion when the model has one); without the fusion it is
    # exactly predict_views of the pre-processed frame.
    network = Classifier(threads=1, fusion=False)
    p_net = network.predict(frames)
    views = network.preprocess(frames[0])
    np.testing.assert_allclose(network.predict_views(views), p_net[:1], atol=1e-6)
    np.testing.assert_allclose(network.predict_views(views[None]), p_net[:1], atol=1e-6)
    with pytest.raises(ValueError):
        clf.predict_views(np.zeros((1, 2, 3, 8, 8), np.float32))


@shipped
def test_shipped_state_dict_matches_shipped_onnx():
    torch = pytest.importorskip("torch")
    from streamwatch.train.export import load_model

    clf = Classifier()
    model = load_model(ASSETS / "model.pt", clf.variant, clf.geometry)
    x = np.random.default_rng(1).standard_normal((3, clf.geometry.views, 3, clf.geometry.size, clf.geometry.size)).astype(np.float32)
    with torch.no_grad():
        pt = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(pt, clf.predict_views(x), atol=1e-4)
    sd = torch.load(ASSETS / "model.pt", map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())


@shipped
@pytest.mark.skipif(not (SHARED / "stills").exists(), reason="shared training footage not present")
def test_shipped_model_on_obvious_faults():
    """Smoke test on a clean photo and blatant versions of some faults."""
    from streamwatch.train import degrade as dg

    img = cv2.imread(str(SHARED / "stills" / "opencv_home.jpg"))
    img = cv2.resize(img, (768, 576), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    cases = {
        "monochrome": dg.monochrome(img, rng),
        "salt_pepper": dg.salt_pepper(img, rng, amount=0.05),
        "gaussian_noise": dg.gaussian_noise(img, rng, sigma=30),
        "overexposed": dg.overexpose(img, rng, gain=5.0),
    }
    clf = Classifier()
    probs = clf.predict([dg.jpeg(v, 90) for v in cases.values()])
    got = [CLASS_NAMES[i] for i in probs.argmax(1)]
    assert got == list(cases), got


@shipped
@pytest.mark.parametrize("runtime, atol", [("openvino", 1e-4), ("openvino-bf16", 0.08)])
def test_openvino_runtimes_agree_with_onnxruntime(runtime, atol):
    """The same model on OpenVINO: fp32 gives onnxruntime's probabilities; bf16 stays close.
    Frames: real-looking content (smooth gradients, edges, noise) at CCTV resolutions."""
    pytest.importorskip("openvino")

    reference = Classifier(threads=1)
    try:
        other = Classifier(threads=1, runtime=runtime)
    except ModelLoadError as exc:
        if "no native BF16" in str(exc):
            pytest.skip(str(exc))
        raise
    assert other.runtime == runtime and other.version == reference.version
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:576, 0:768]
    base = np.stack([(xx / 3) % 256, (yy / 2.25) % 256, ((xx + yy) / 5) % 256], -1).astype(np.float32)
    frames = [np.clip(base + rng.normal(0, s, base.shape), 0, 255).astype(np.uint8) for s in (0, 5, 25)]
    frames.append(cv2.GaussianBlur(frames[0], (0, 0), 4))
    a, b = reference.predict(frames), other.predict(frames)
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(a, b, atol=atol)


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime"):
        Classifier(runtime="tensorrt")


def test_auto_runtime_picks_bf16_only_where_the_cpu_has_it():
    from streamwatch.model.runtime import resolve_runtime

    picked = resolve_runtime("auto")
    try:
        from streamwatch.model.runtime import import_openvino

        has_bf16 = "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ImportError:
        has_bf16 = False
    assert picked == ("openvino-bf16" if has_bf16 else "onnxruntime")
    assert resolve_runtime("onnxruntime") == "onnxruntime"
    assert Classifier(threads=1, runtime="auto").runtime == picked


def test_loading_the_model_sends_no_library_telemetry(tmp_path):
    """Importing the openvino package as such sends a usage event to Google Analytics from a
    non-daemon thread and writes ~/intel/openvino_ga_cid; onnxruntime's Linux wheels queue usage
    events for Microsoft under ~/.cache/Microsoft. The daemon must not phone home. Run in a fresh
    interpreter (both libraries are already loaded here) with HOME in a scratch folder."""
    pytest.importorskip("openvino")
    script = (
        "import threading\n"
        "from streamwatch.model.runtime import Classifier, resolve_runtime\n"
        "Classifier(runtime='openvino', threads=1)\n"
        "Classifier(runtime='onnxruntime', threads=1)\n"
        "print(resolve_runtime('auto'))\n"
        "print(sorted(t.name for t in threading.enumerate()))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("ORT_DISABLE_TELEMETRY", None)  # what streamwatch itself sets, not the test's environment
    env.pop("CI", None)  # the telemetry stays quiet in CI; the daemon runs outside it
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "['MainThread']"
    assert list(tmp_path.iterdir()) == []
