"""Field bench: the classifier on faulty *video* - degraded, H.264-encoded, decoded, sampled.

``streamwatch evaluate`` scores JPEG stills; a camera feed reaches the daemon through a video
encoder. This bench makes one clip per held-out scene and fault class with the recipe of
:mod:`streamwatch.train.video` (fault parameters fixed per clip, noise fresh per frame, light
sensor noise, libx264 ``-crf 23 -maxrate 2M``, keyframe every 2 s, 25 fps), decodes it with
OpenCV and classifies every 5th frame with ``Classifier.predict`` (network + fusion, what the
daemon runs). Scenes: the source files of one split of a built dataset (``--split``, default
``test``: never seen in training; choose designs on ``val``).

Prints, per class, the share of sampled frames whose top class is right (keyframes and
P-frames apart) and the share of clips on which the daemon's default state machine (3 samples
in a row at confidence >= 0.5) raises the fault - for ``normal``, the share of clean clips on
which *no* fault is raised. ``--json``: one JSON object instead.

    python bench/field.py --data /work/scratch/model/ds_v1 [--split test] [--model PATH] [--json] [--verbose]

Clips are cached in ``--cache`` (default ``<data>/.cache/field``), keyed by the clip recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402
from streamwatch.train.video import GOP, clip_specs, make_clips, sampled_frames, split_scenes  # noqa: E402

EVERY = 5  # classify every 5th decoded frame


def would_raise(confidences, threshold: float = 0.5, raise_after: int = 3) -> bool:
    """Whether the daemon's default state machine raises on this sequence of confidences."""
    run = 0
    for c in confidences:
        run = run + 1 if c >= threshold else 0
        if run >= raise_after:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="built dataset whose split's sources are the scenes")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="one line per clip (mean probabilities in class order)")
    ap.add_argument("--save-probs", type=Path, default=None,
                    help="write every clip's per-sample probabilities here (.npz: scene, label, probs per clip), "
                         "to study alert thresholds without re-running the model")
    ap.add_argument("--osd", action="store_true",
                    help="cameras with an on-screen display: date/time ticking every second and a camera name "
                         "(streamwatch.train.degrade.osd), on top of optical/sensor faults, under the others")
    args = ap.parse_args(argv)

    from streamwatch.model.runtime import Classifier

    classes = tuple(c for c in CLASS_NAMES if c != "frozen")
    specs = clip_specs(split_scenes(args.data, args.split), classes, args.seed, args.seconds, osd=args.osd)
    clips = make_clips(specs, args.cache or args.data / ".cache" / "field", args.workers)
    clf = Classifier(args.model, threads=args.workers)

    saved: dict[str, list] = {"scene": [], "label": [], "probs": []}
    tally = {c: {"frames": 0, "right": 0, "key": [0, 0], "p": [0, 0], "clips": 0, "ok": 0, "wrong_as": {}} for c in classes}
    for spec, clip in zip(specs, clips):
        samples = sampled_frames(clip, EVERY)
        probs = clf.predict([f for _, f in samples])
        saved["scene"].append(spec.scene.name)
        saved["label"].append(spec.label)
        saved["probs"].append(probs)
        k = CLASS_NAMES.index(spec.label)
        right = probs.argmax(1) == k
        t = tally[spec.label]
        t["frames"] += len(samples)
        t["right"] += int(right.sum())
        for (index, _), r in zip(samples, right):
            bucket = t["key"] if index % GOP == 0 else t["p"]
            bucket[0], bucket[1] = bucket[0] + int(r), bucket[1] + 1
        t["clips"] += 1
        if spec.label == "normal":
            t["ok"] += int(not any(would_raise(probs[:, j]) for j in range(1, len(CLASS_NAMES))))
        else:
            t["ok"] += int(would_raise(probs[:, k]))
        for wrong in probs.argmax(1)[~right]:
            name = CLASS_NAMES[int(wrong)]
            t["wrong_as"][name] = t["wrong_as"].get(name, 0) + 1
        if args.verbose:
            print(f"{spec.scene.name[:40]:40s} {spec.label:15s} {right.mean() * 100:5.1f} %  mean p "
                  + " ".join(f"{v:.2f}" for v in probs.mean(0)), flush=True)

    per_class = {c: {"frame_accuracy": round(t["right"] / max(t["frames"], 1), 4),
                     "keyframe_accuracy": round(t["key"][0] / max(t["key"][1], 1), 4),
                     "pframe_accuracy": round(t["p"][0] / max(t["p"][1], 1), 4),
                     "clip_ok": round(t["ok"] / max(t["clips"], 1), 4),
                     "clips": t["clips"], "frames": t["frames"], "wrong_as": t["wrong_as"]} for c, t in tally.items()}
    if args.save_probs:
        np.savez(args.save_probs, scene=np.array(saved["scene"]), label=np.array(saved["label"]),
                 probs=np.stack(saved["probs"]) if len({p.shape for p in saved["probs"]}) == 1
                 else np.array(saved["probs"], dtype=object))
    frames = sum(t["frames"] for t in tally.values())
    result = {"split": args.split, "osd": args.osd, "scenes": len({s.scene for s in specs}), "clips": len(specs),
              "seconds": args.seconds, "model": str(clf.path), "version": clf.version,
              "frame_accuracy": round(sum(t["right"] for t in tally.values()) / max(frames, 1), 4),
              "mean_class_frame_accuracy": round(float(np.mean([r["frame_accuracy"] for r in per_class.values()])), 4),
              "per_class": per_class}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['scenes']} {args.split} scenes, {len(specs)} clips of {args.seconds:g} s (colourless scenes: "
          f"monochrome only), model {clf.version}")
    print(f"{'class':16s} {'frames %':>8s} {'key %':>6s} {'P %':>6s} {'clips ok %':>10s}  mistaken for")
    for c, r in per_class.items():
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(r["wrong_as"].items(), key=lambda kv: -kv[1])[:3])
        print(f"{c:16s} {r['frame_accuracy'] * 100:8.1f} {r['keyframe_accuracy'] * 100:6.1f} "
              f"{r['pframe_accuracy'] * 100:6.1f} {r['clip_ok'] * 100:10.1f}  {wrong}")
    print(f"all frames {result['frame_accuracy'] * 100:.1f} %, mean of classes {result['mean_class_frame_accuracy'] * 100:.1f} %; "
          "clips ok: normal = clean clips with no fault raised, faults = clips on which the fault is raised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
