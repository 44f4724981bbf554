"""Privacy-mask bench: what the classifier calls healthy pictures that carry a privacy mask.

Many CCTV cameras black out part of the view (a neighbour's window, a keypad). Every ``normal``
image of a split gets one solid rectangle (4-15 % of the picture, aspect 1:2 to 2:1, anywhere
inside the frame; one random draw per image, fixed by ``--seed``) and is JPEG-coded again
(quality 90), then scored by the classifier as the daemon runs it, in four versions side by side:

* ``clean``: the picture only re-coded (the baseline for the other three);
* ``black_mask`` / ``grey_mask``: the rectangle filled with black / mid-grey, as cameras draw them;
* ``inpainted``: the black rectangle filled from its surroundings (OpenCV Telea inpainting at a
  quarter of the resolution) - an upper bound on what a configured mask region could recover
  if the daemon filled it before classifying.

Prints the share called ``normal`` and the classes the rest were called, per version.

    python bench/privacy_masks.py --data /work/scratch/model/ds_v3/test [--model PATH] [--seed 0] [--json]
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

VERSIONS = ("clean", "black_mask", "grey_mask", "inpainted")


def mask_rectangle(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(x, y, width, height) of one random mask of 4-15 % of the picture, inside it."""
    h, w = shape[:2]
    area = rng.uniform(0.04, 0.15) * w * h
    aspect = rng.uniform(0.5, 2.0)
    mw = int(min(w * 0.9, np.sqrt(area * aspect)))
    mh = int(min(h * 0.9, area / mw))
    return int(rng.integers(0, w - mw)), int(rng.integers(0, h - mh)), mw, mh


def inpaint(image: np.ndarray, rect: tuple[int, int, int, int], scale: int = 4) -> np.ndarray:
    """The rectangle filled from its surroundings (Telea, at 1/scale resolution for speed)."""
    h, w = image.shape[:2]
    x, y, mw, mh = rect
    mask = np.zeros((h, w), np.uint8)
    mask[y : y + mh, x : x + mw] = 255
    small = cv2.inpaint(cv2.resize(image, (w // scale, h // scale), interpolation=cv2.INTER_AREA),
                        cv2.resize(mask, (w // scale, h // scale), interpolation=cv2.INTER_NEAREST),
                        3, cv2.INPAINT_TELEA)
    out = image.copy()
    out[mask > 0] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[mask > 0]
    return out


def versions(image: np.ndarray, rect: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    x, y, mw, mh = rect
    black, grey = image.copy(), image.copy()
    black[y : y + mh, x : x + mw] = 0
    grey[y : y + mh, x : x + mw] = 128
    out = {"clean": image, "black_mask": black, "grey_mask": grey, "inpainted": inpaint(black, rect)}
    return {name: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
            for name, im in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a split folder with a normal/ sub-folder")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from streamwatch.model.runtime import Classifier

    classifier = Classifier(args.model, threads=2)
    rng = np.random.default_rng(args.seed)
    paths = sorted((args.data / "normal").glob("*.jpg"))
    if not paths:
        ap.error(f"no normal/*.jpg under {args.data}")
    called: dict[str, collections.Counter] = {v: collections.Counter() for v in VERSIONS}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        made = versions(image, mask_rectangle(image.shape, rng))
        probs = classifier.predict([made[v] for v in VERSIONS])
        for v, p in zip(VERSIONS, probs):
            called[v][CLASS_NAMES[int(np.argmax(p))]] += 1
    report = {"data": str(args.data), "images": len(paths), "seed": args.seed,
              "normal_share": {v: called[v]["normal"] / len(paths) for v in VERSIONS},
              "called": {v: dict(called[v].most_common()) for v in VERSIONS}}
    if args.json:
        print(json.dumps(report))
    else:
        for v in VERSIONS:
            print(f"{v:11s} normal {report['normal_share'][v] * 100:5.1f} %   {report['called'][v]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
