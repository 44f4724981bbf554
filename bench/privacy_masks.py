"""Privacy-mask bench: what the classifier calls healthy pictures that carry a privacy mask.

Many CCTV cameras black out part of the view (a neighbour's window, a keypad). Every ``normal``
image of a split gets one solid rectangle (4-15 % of the picture, aspect 1:2 to 2:1, anywhere
inside the frame; one random draw per image, fixed by ``--seed``) and is JPEG-coded again
(quality 90), then scored by the classifier as the daemon runs it, in four versions side by side:

* ``clean``: the picture only re-coded (the baseline for the other three);
* ``black_mask`` / ``grey_mask``: the rectangle filled with black / mid-grey, as cameras draw them;
* ``filled``: the black rectangle declared as the camera's mask region (``cameras[].masks`` in
  the config) and filled from its surroundings before classifying, as the daemon does
  (``streamwatch.model.masks.fill_regions``: Telea inpainting on a reduced copy of the region).

Prints, per class and version, the share called the true class (``--all-classes``: the fault
pictures too - a filled mask must not hide a fault) and what the normal pictures were called.

    python bench/privacy_masks.py --data /work/scratch/model/ds_v3/test [--all-classes] [--every N]
        [--model PATH] [--seed 0] [--json]
    python bench/privacy_masks.py --data /work/scratch/model/ds_v3/test --cost
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402
from streamwatch.config import MaskRegion  # noqa: E402
from streamwatch.model.masks import fill_regions  # noqa: E402

VERSIONS = ("clean", "black_mask", "grey_mask", "filled")


def mask_rectangle(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(x, y, width, height) of one random mask of 4-15 % of the picture, inside it."""
    h, w = shape[:2]
    area = rng.uniform(0.04, 0.15) * w * h
    aspect = rng.uniform(0.5, 2.0)
    mw = int(min(w * 0.9, np.sqrt(area * aspect)))
    mh = int(min(h * 0.9, area / mw))
    return int(rng.integers(0, w - mw)), int(rng.integers(0, h - mh)), mw, mh


def versions(image: np.ndarray, rect: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    x, y, mw, mh = rect
    black, grey = image.copy(), image.copy()
    black[y : y + mh, x : x + mw] = 0
    grey[y : y + mh, x : x + mw] = 128
    h, w = image.shape[:2]
    region = MaskRegion(x=x / w, y=y / h, width=mw / w, height=mh / h)
    out = {"clean": image, "black_mask": black, "grey_mask": grey, "filled": fill_regions(black, [region])}
    return {name: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
            for name, im in out.items()}


def cost(data: Path, model: Path | None, rounds: int = 7, repeat: int = 10) -> int:
    """Median ratio of filling one mask to classifying the frame (one thread each, alternated
    in one process: the machine's noise hits both alike)."""
    import statistics
    import time

    from streamwatch.model.runtime import Classifier

    cv2.setNumThreads(1)
    first = sorted((data / "normal").glob("*.jpg"))[0]
    frame = cv2.resize(cv2.imread(str(first), cv2.IMREAD_COLOR), (1920, 1080))
    regions = [MaskRegion(x=0.55, y=0.15, width=0.3, height=0.3)]
    classifier = Classifier(model, threads=1)
    classifier.predict([frame]), fill_regions(frame, regions)
    ratios = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fill_regions(frame, regions)
        fill = (time.perf_counter() - started) / repeat
        started = time.perf_counter()
        for _ in range(repeat):
            classifier.predict([frame])
        predict = (time.perf_counter() - started) / repeat
        ratios.append(fill / predict)
        print(f"fill {fill * 1000:.2f} ms, classify {predict * 1000:.2f} ms")
    print(f"fill / classify, median of {rounds}: {statistics.median(ratios):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a split folder with a normal/ sub-folder")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-classes", action="store_true",
                    help="also mask the fault pictures (does filling a mask hide a fault?)")
    ap.add_argument("--every", type=int, default=1, help="use every n-th image of each class")
    ap.add_argument("--cost", action="store_true",
                    help="only time filling one 9 %% mask of a 1080p frame against classifying that frame")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.cost:
        return cost(args.data, args.model)

    from streamwatch.model.runtime import Classifier

    classifier = Classifier(args.model, threads=2)
    rng = np.random.default_rng(args.seed)
    classes = [c for c in CLASS_NAMES if (args.data / c).is_dir()] if args.all_classes else ["normal"]
    report: dict = {"data": str(args.data), "seed": args.seed, "classes": {}}
    for label in classes:
        paths = sorted((args.data / label).glob("*.jpg"))[:: args.every]
        if not paths:
            ap.error(f"no {label}/*.jpg under {args.data}")
        called: dict[str, collections.Counter] = {v: collections.Counter() for v in VERSIONS}
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            made = versions(image, mask_rectangle(image.shape, rng))
            probs = classifier.predict([made[v] for v in VERSIONS])
            for v, p in zip(VERSIONS, probs):
                called[v][CLASS_NAMES[int(np.argmax(p))]] += 1
        report["classes"][label] = {
            "images": len(paths),
            "right": {v: called[v][label] / len(paths) for v in VERSIONS},
            "called": {v: dict(called[v].most_common()) for v in VERSIONS},
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{'class':15s} {'n':>4s} " + " ".join(f"{v:>11s}" for v in VERSIONS) + "   (% called the true class)")
        for label, r in report["classes"].items():
            print(f"{label:15s} {r['images']:4d} " + " ".join(f"{r['right'][v] * 100:10.1f}%" for v in VERSIONS))
        for v in VERSIONS[1:]:
            print(f"normal pictures, {v}: {report['classes']['normal']['called'][v]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
