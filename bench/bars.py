"""Black bars bench: the classifier on test pictures framed the way CCTV re-streams frame them.

Every image of a split (``--every`` n-th) is shown plain, letterboxed (picture 2.35:1 in its
frame, black bars above and below), pillarboxed (picture 4:3 in a 16:9 frame) and with a black
clock strip under it (8 % of the height, white OSD text), after its fault - as a recorder
would add them - and JPEG-coded again (quality 90). Each framing is scored by the shipped
classifier as the daemon runs it (black edge bars cut away, ``streamwatch.model.borders``) and,
side by side in the same run, on the whole frame (the behaviour before session 10).

    python bench/bars.py --data /work/scratch/model/ds_v3/test [--every 2] [--model PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402


def letterbox(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    inner = min(h * 3 // 4, int(w / 2.35))
    out = np.zeros_like(image)
    top = (h - inner) // 2
    out[top : top + inner] = cv2.resize(image, (w, inner), interpolation=cv2.INTER_AREA)
    return out


def pillarbox(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    frame_w = max(w, h * 16 // 9)
    inner = min(w, h * 4 // 3)
    out = np.zeros((h, frame_w, 3), np.uint8)
    left = (frame_w - inner) // 2
    out[:, left : left + inner] = cv2.resize(image, (inner, h), interpolation=cv2.INTER_AREA)
    return out


def clock_strip(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    strip = max(12, h * 8 // 100)
    out = np.zeros((h + strip, w, 3), np.uint8)
    out[:h] = image
    cv2.putText(out, "2026-12-04 10:00:00  CAM 03", (strip // 3, h + strip * 3 // 4), cv2.FONT_HERSHEY_SIMPLEX,
                strip / 50, (255, 255, 255), max(1, strip // 25))
    return out


FRAMINGS = {"plain": lambda image: image, "letterbox": letterbox, "pillarbox": pillarbox, "clock_strip": clock_strip}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a split folder with one sub-folder per class")
    ap.add_argument("--every", type=int, default=2, help="use every n-th image (default 2)")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from streamwatch.model.fusion import frame_features
    from streamwatch.model.runtime import Classifier
    from streamwatch.checks.classical import neutralise_decoder_tint
    from streamwatch.train.dataset import list_images

    class WholeFrame(Classifier):
        """The classifier before session 10: views and measurements of the whole frame."""

        def frame_inputs(self, frame):
            frame = neutralise_decoder_tint(frame)
            return self.preprocess(frame), (frame_features(frame) if self.fused else None)

    items = list_images(args.data)[:: args.every]
    labels = np.array([c for _, c in items])
    models = {"cut": Classifier(args.model, threads=2), "whole_frame": WholeFrame(args.model, threads=2)}
    report: dict = {"data": str(args.data), "images": len(items), "results": {}}
    for framing, make in FRAMINGS.items():
        for name, clf in models.items():
            predictions = []
            for i in range(0, len(items), 16):
                batch = [make(cv2.imread(str(p), cv2.IMREAD_COLOR)) for p, _ in items[i : i + 16]]
                batch = [cv2.imdecode(cv2.imencode(".jpg", b, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
                         for b in batch]
                predictions.append(clf.predict(batch).argmax(1))
            pred = np.concatenate(predictions)
            per_class = {c: round(float((pred[labels == k] == k).mean()), 4) for k, c in enumerate(CLASS_NAMES)
                         if (labels == k).any()}
            normal = labels == 0
            report["results"][f"{framing}/{name}"] = {
                "accuracy": round(float((pred == labels).mean()), 4),
                "false_alarm_rate": round(float((pred[normal] != 0).mean()), 4) if normal.any() else None,
                "per_class": per_class,
            }
            if not args.json:
                r = report["results"][f"{framing}/{name}"]
                print(f"{framing:12s} {name:12s} acc {r['accuracy'] * 100:6.2f}  FAR {(r['false_alarm_rate'] or 0) * 100:6.2f}  "
                      + " ".join(f"{c[:6]}:{v * 100:5.1f}" for c, v in per_class.items()), flush=True)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
