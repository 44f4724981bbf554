"""Field bench: the shipped classifier on faulty *video* - degraded, H.264-encoded, decoded.

``streamwatch evaluate`` scores JPEG stills. A camera feed is different: the fault is applied to
the sensor picture, then a video encoder spends its bits (P-frames smooth noise and impulses
away, macroblocks quantise a cast or a blur), and the daemon samples decoded frames. This bench
plays that chain for held-out scenes:

1. a scene: each *test-split* source file of a dataset (``--data``; never seen in training or
   validation; a colourless source only makes the ``monochrome`` clip), still pictures panned slowly (an encoder needs motion to behave like on a live
   feed), videos as they are, at most 1280 px wide;
2. per scene and fault class, one clip: the degradation of ``streamwatch.train.degrade`` with
   its parameters drawn once per clip (a camera's cast or blur does not change every frame) and
   its noise drawn fresh per frame, plus a light sensor noise (sigma 1.5) on every clip;
3. encoded with the ffmpeg CLI (libx264, capped VBR ``-crf 23 -maxrate 2M``, keyframe every 2 s,
   25 fps - the usual CCTV setting), decoded with OpenCV, every 5th frame classified by
   ``Classifier.predict`` (network + fusion, what the daemon runs).

Prints, per fault class, the share of sampled frames whose top class is that fault (for
``normal``: the share called normal) and the share of clips on which the daemon's default state
machine (3 positive samples in a row at confidence >= 0.5) would raise the fault, keyframes and
P-frames separately. ``frozen`` (the broken-decode picture) is left out: on a live feed a stuck
picture is the temporal check's job and a broken decode cannot be made by degrading frames
before the encoder. ``--json`` prints one JSON object instead.

    python bench/field.py --data /work/scratch/model/ds_v1 [--model PATH] [--seconds 6] [--json]

Encoded clips are cached in ``--cache`` (default ``<data>/.cache/field``), keyed by scene,
class, seed and bench version.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402

#: Bump when the clip recipe changes (invalidates the cache).
FIELD_VERSION = 1
FPS = 25
GOP = 50
EVERY = 5  # classify every 5th decoded frame
MAX_WIDTH = 1280
FIELD_CLASSES = tuple(c for c in CLASS_NAMES if c != "frozen")


def _scene_frames(path: Path, seconds: float) -> list[np.ndarray]:
    """The scene's frames at FPS: a still panned slowly, a video as decoded (looped)."""
    n = int(round(seconds * FPS))
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is not None:
        h, w = img.shape[:2]
        scale = min(1.0, MAX_WIDTH / (w * 0.9))
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        cw, ch = (int(w * 0.9) // 2) * 2, (int(h * 0.9) // 2) * 2
        # One pixel per frame at most: a slow pan, like a PTZ drifting or wind on a pole.
        frames = []
        for i in range(n):
            x = min(w - cw, i * (w - cw) // max(n, 1))
            y = min(h - ch, i * (h - ch) // max(2 * n, 1))
            frames.append(img[y : y + ch, x : x + cw].copy())
        return frames
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    if not frames:
        raise RuntimeError(f"cannot read {path}")
    h, w = frames[0].shape[:2]
    scale = min(1.0, MAX_WIDTH / w)
    size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
    return [cv2.resize(frames[i % len(frames)], size, interpolation=cv2.INTER_AREA) for i in range(n)]


def _degrader(label: str, seed: int):
    """A per-frame degradation with its parameters fixed for the clip and its noise fresh per frame."""
    from streamwatch.train import degrade as dg

    params = np.random.default_rng([seed, 1])
    if label == "gaussian_noise":
        sigma, colour = float(params.uniform(12.0, 30.0)), bool(params.random() < 0.5)
        return lambda img, rng: dg.gaussian_noise(img, rng, sigma=sigma, color=colour)
    if label == "salt_pepper":
        amount = float(params.uniform(0.01, 0.06))
        return lambda img, rng: dg.salt_pepper(img, rng, amount=amount)
    if label == "normal":
        return lambda img, rng: img
    # Cast, blur, exposure, chroma: the same draw for every frame (same generator state).
    return lambda img, rng: dg.degrade(img, label, np.random.default_rng([seed, 2]))


def make_clip(scene: Path, label: str, seed: int, seconds: float, out: Path) -> Path:
    """Degrade, add sensor noise and encode one clip with ffmpeg (libx264); returns ``out``."""
    if out.exists():
        return out
    frames = _scene_frames(scene, seconds)
    h, w = frames[0].shape[:2]
    fault = _degrader(label, seed)
    rng = np.random.default_rng([seed, 3])
    tmp = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-maxrate", "2M",
           "-bufsize", "4M", "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
           "-threads", "1", str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for f in frames:
        noisy = np.clip(f.astype(np.float32) + rng.normal(0.0, 1.5, f.shape), 0, 255).astype(np.uint8)
        proc.stdin.write(np.ascontiguousarray(fault(noisy, rng)).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed on {scene} / {label}")
    tmp.rename(out)
    return out


def _make_clip_task(task: tuple) -> str:
    return str(make_clip(*task))


def sampled_frames(clip: Path) -> list[tuple[int, np.ndarray]]:
    """(frame index, decoded frame) for every EVERY-th frame."""
    cap = cv2.VideoCapture(str(clip))
    out, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % EVERY == 0:
            out.append((i, f))
        i += 1
    cap.release()
    return out


def would_raise(confidences: list[float], threshold: float = 0.5, raise_after: int = 3) -> bool:
    """Whether the daemon's default state machine raises on this sequence of confidences."""
    run = 0
    for c in confidences:
        run = run + 1 if c >= threshold else 0
        if run >= raise_after:
            return True
    return False


def _is_grey(scene: Path) -> bool:
    """Whether the scene has no chroma (decoded pixels grey, up to a decoder's tint)."""
    from streamwatch.checks.classical import neutralise_decoder_tint

    first = _scene_frames(scene, 1.0 / FPS)[0]
    return neutralise_decoder_tint(first) is not first


def test_scenes(data: Path) -> list[Path]:
    """The test split's source files of a dataset built by ``streamwatch dataset build``."""
    meta = json.loads((data / "dataset.json").read_text())
    src_dir = Path(meta["src_dir"])
    with open(data / "samples.csv", newline="") as fh:
        sources = sorted({row["source"] for row in csv.DictReader(fh) if row["split"] == "test"})
    return [src_dir / s for s in sources]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset whose test-split sources are the scenes")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="one line per clip (mean probabilities in class order)")
    args = ap.parse_args(argv)

    from streamwatch.model.runtime import Classifier

    cache = args.cache or args.data / ".cache" / "field"
    cache.mkdir(parents=True, exist_ok=True)
    scenes = test_scenes(args.data)
    tasks = []
    grey = {scene for scene in scenes if _is_grey(scene)}
    for si, scene in enumerate(scenes):
        for label in FIELD_CLASSES:
            if scene in grey and label != "monochrome":
                continue  # a colourless source is monochrome whatever else it shows (the dataset uses it so)
            seed = args.seed * 100_000 + si * 100 + CLASS_NAMES.index(label)
            out = cache / f"v{FIELD_VERSION}_{scene.stem}_{label}_{seed}_{args.seconds:g}s.mp4"
            tasks.append((scene, label, seed, args.seconds, out))
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        clips = list(pool.map(_make_clip_task, tasks))
    made = time.time() - t0

    clf = Classifier(args.model, threads=args.workers)
    per_class: dict[str, dict] = {c: {"frames": 0, "right": 0, "key": [0, 0], "p": [0, 0], "clips": 0, "raised": 0}
                                  for c in FIELD_CLASSES}
    wrong_as: dict[str, dict[str, int]] = {c: {} for c in FIELD_CLASSES}
    for (scene, label, _, _, _), clip in zip(tasks, clips):
        samples = sampled_frames(Path(clip))
        probs = clf.predict([f for _, f in samples])
        top = probs.argmax(1)
        k = CLASS_NAMES.index(label)
        right = top == k
        s = per_class[label]
        s["frames"] += len(samples)
        s["right"] += int(right.sum())
        for (idx, _), r in zip(samples, right):
            bucket = s["key"] if idx % GOP == 0 else s["p"]
            bucket[0] += int(r)
            bucket[1] += 1
        s["clips"] += 1
        if label == "normal":
            # Raised = any fault would be raised on this clean clip (a false alert).
            raised = any(would_raise(list(probs[:, j])) for j in range(1, len(CLASS_NAMES)))
            s["raised"] += int(not raised)
        else:
            s["raised"] += int(would_raise(list(probs[:, k])))
        if args.verbose:
            print(f"{scene.name[:40]:40s} {label:15s} {right.mean() * 100:5.1f} %  mean p " + " ".join(
                f"{v:.2f}" for v in probs.mean(0)), flush=True)
        for t in top[~right]:
            name = CLASS_NAMES[int(t)]
            wrong_as[label][name] = wrong_as[label].get(name, 0) + 1

    result = {"scenes": len(scenes), "grey_scenes": sorted(p.name for p in grey), "seconds": args.seconds, "model": str(clf.path), "version": clf.version,
              "clip_seconds_to_make": round(made, 1), "per_class": {}}
    for c, s in per_class.items():
        result["per_class"][c] = {
            "frame_accuracy": round(s["right"] / max(s["frames"], 1), 4),
            "keyframe_accuracy": round(s["key"][0] / max(s["key"][1], 1), 4),
            "pframe_accuracy": round(s["p"][0] / max(s["p"][1], 1), 4),
            # normal: share of clean clips with no false alert; faults: share of clips alerted.
            "clip_ok": round(s["raised"] / max(s["clips"], 1), 4),
            "clips": s["clips"], "frames": s["frames"], "wrong_as": wrong_as[c]}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(scenes)} held-out scenes x {len(FIELD_CLASSES)} classes ({len(grey)} colourless scenes: "
          f"monochrome only), {args.seconds:g} s clips, model {clf.version}")
    print(f"{'class':16s} {'frames %':>8s} {'key %':>6s} {'P %':>6s} {'clips ok %':>10s}  mistaken for")
    for c, r in result["per_class"].items():
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(r["wrong_as"].items(), key=lambda kv: -kv[1])[:3])
        print(f"{c:16s} {r['frame_accuracy'] * 100:8.1f} {r['keyframe_accuracy'] * 100:6.1f} "
              f"{r['pframe_accuracy'] * 100:6.1f} {r['clip_ok'] * 100:10.1f}  {wrong}")
    print("clips ok: normal = clean clips with no fault raised; faults = clips on which the fault is raised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
