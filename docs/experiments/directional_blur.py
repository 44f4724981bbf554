"""Experiment (session 26, not shipped): directional sharpness measures for motion blur.

Motion blur removes detail along one direction only; the fusion's sharpness measures
(Laplacian energy per octave, Crete-Roffet re-blur across rows and columns) are isotropic or
axis-bound, and the test split's motion-blurred pictures are the blur kind it finds least
(docs/results.md, sessions 23 and 26). This script is the exact code measured in session 26:

* :func:`directional_measures` - 16 numbers per picture: on a 640 px grey copy and on the fusion's
  native-resolution mosaic (``fusion.native_mosaic``, four 128 px tiles), the mean absolute first
  difference along 0, 90, 45 and 135 degrees (diagonals divided by sqrt 2) and the second
  difference at step 2, each summarised as log(min / max) and log(min / median) over the four
  directions, whether both scales agree on the weakest direction, and the ratio of the fine to a
  step-4 difference per direction (log min / max, log min / median) with the step-4 anisotropy.
* ``measure FOLDER...`` caches them per folder beside the repository's caches
  (``<folder parent>/.cache/<name>_dir_v2.npy``, in ``views_cache`` order).
* ``ab COLS SEEDS [--val]`` fits the fusion (``export.fit_fusion``, shipped settings, seeds
  0..SEEDS-1 averaged) on the fusion measurements (``features_cache``) of ``ds_v3`` train + val,
  with and without the directional columns COLS, and scores ``ds_v3/test`` (``--val``: fit on
  train, score val) - accuracy, false alarms, motion-blur recall, and faults found with the
  normal logit shifted until 10 / 15 / 20 % of normal pictures are called faults.

    python docs/experiments/directional_blur.py measure DS/train DS/val DS/test
    python docs/experiments/directional_blur.py ab 0,1,2,3,5,6,7,8,9,10,11,13,14,15 5 --data DS

To ship, the measures belong in ``fusion.frame_features`` (computed on its own 640 px grey copy,
which is resized before the grey conversion - slightly different numbers, so the model must be
refitted on the new version's caches).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

NAMES = ("e1_minmax", "e1_minmed", "e2_minmax", "e2_minmed", "e_same", "e_rminmax", "e_rminmed", "e_cminmax",
         "n1_minmax", "n1_minmed", "n2_minmax", "n2_minmed", "n_same", "n_rminmax", "n_rminmed", "n_cminmax")


def _energies(g: np.ndarray, step: int) -> np.ndarray:
    """Mean |difference| at ``step`` along 0, 90, 45, 135 degrees (diagonals per unit length)."""
    s = step
    d = [np.abs(g[:, s:] - g[:, :-s]), np.abs(g[s:, :] - g[:-s, :]),
         np.abs(g[s:, s:] - g[:-s, :-s]) / np.sqrt(2), np.abs(g[s:, :-s] - g[:-s, s:]) / np.sqrt(2)]
    return np.array([x.mean() for x in d]) + 1e-3


def _second(g: np.ndarray) -> np.ndarray:
    """Mean |second difference| at step 2 along the same four directions."""
    d = [np.abs(g[:, 4:] - 2 * g[:, 2:-2] + g[:, :-4]), np.abs(g[4:, :] - 2 * g[2:-2, :] + g[:-4, :]),
         np.abs(g[4:, 4:] - 2 * g[2:-2, 2:-2] + g[:-4, :-4]) / 2, np.abs(g[4:, :-4] - 2 * g[2:-2, 2:-2] + g[:-4, 4:]) / 2]
    return np.array([x.mean() for x in d]) + 1e-3


def directional_measures(path: str) -> np.ndarray:
    """The 16 :data:`NAMES` measures of one picture file."""
    from streamwatch.model.fusion import native_mosaic

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    g640 = cv2.resize(grey, (640, max(1, round(h * 640 / w))), interpolation=cv2.INTER_AREA)
    mosaic = cv2.cvtColor(native_mosaic(img, 128), cv2.COLOR_BGR2GRAY)
    out: list[float] = []
    for g in (g640.astype(np.float32), mosaic.astype(np.float32)):
        e, e2, c = _energies(g, 1), _second(g), _energies(g, 4)
        r = e / c
        out += [np.log(e.min() / e.max()), np.log(e.min() / np.median(e)), np.log(e2.min() / e2.max()),
                np.log(e2.min() / np.median(e2)), float(np.argmin(e2) == np.argmin(e)),
                np.log(r.min() / r.max()), np.log(r.min() / np.median(r)), np.log(c.min() / c.max())]
    return np.array(out, np.float32)


def measure(folder: Path) -> np.ndarray:
    """Cached :func:`directional_measures` of every picture of ``folder``/<class>/."""
    from streamwatch.train.trainer import _cache_lookup

    items, labels, xf, yf, cached = _cache_lookup(folder, f"{folder.name}_dir_v2", mmap=False)
    if cached is not None:
        return cached
    t = time.time()
    with ProcessPoolExecutor(1) as ex:
        x = np.stack(list(ex.map(directional_measures, [str(p) for p, _ in items], chunksize=64)))
    xf.parent.mkdir(parents=True, exist_ok=True)
    np.save(xf, x)
    np.save(yf, labels)
    print(folder, x.shape, f"{time.time() - t:.0f}s", flush=True)
    return x


def ab(data: Path, cols: list[int], seeds: int, on_val: bool) -> dict:
    """Fusion fitted with the directional columns ``cols`` appended (none: the baseline), scored."""
    import torch

    from streamwatch.model.fusion import Fusion
    from streamwatch.model.preprocess import Geometry
    from streamwatch.train.export import FUSION_NETWORK_DROPOUT, fit_fusion, load_model
    from streamwatch.train.trainer import features_cache, probabilities_cache

    torch.set_num_threads(2)
    geom = Geometry(size=112, tiles=2)
    model = load_model(Path(__file__).resolve().parents[2] / "streamwatch/assets/model.pt", "eca_1", geom).eval()

    def rows(split: str):
        p, y = probabilities_cache(model, data / split, geom, progress=False)
        x, _ = features_cache(data / split, progress=False)
        return p, (np.hstack([x, measure(data / split)[:, cols]]) if cols else x), y

    fit_splits, score_split = (["train"], "val") if on_val else (["train", "val"], "test")
    p, x, y = (np.concatenate(a) for a in zip(*[rows(s) for s in fit_splits]))
    fusion = Fusion.ensemble([fit_fusion(p, x, y, network_dropout=FUSION_NETWORK_DROPOUT, seed=s) for s in range(seeds)])
    pt, xt, yt = rows(score_split)
    logits = fusion.logits(pt, xt)
    kinds = {r["file"]: json.loads(r["fault"]).get("kind") for r in csv.DictReader(open(data / "samples.csv"))
             if r["split"] == score_split and r["fault"]}
    from streamwatch.train.trainer import list_images

    kind = np.array([kinds.get(str(pth), "") for pth, _ in list_images(data / score_split)])
    normal, motion = yt == 0, kind == "motion"

    def at_false_alarms(target: float):
        for shift in np.linspace(-6, 6, 1201):  # raise the normal logit until few enough normals are faults
            out = logits.copy()
            out[:, 0] += shift
            out = out.argmax(1)
            if 100 * (out[normal] != 0).mean() <= target:
                return {"faults_found": round(100 * float((out[~normal] == yt[~normal]).mean()), 2),
                        "motion_found": round(100 * float((out[motion] == 3).mean()), 1)}
        return None

    out = logits.argmax(1)
    return {"cols": [NAMES[c] for c in cols], "accuracy": round(100 * float((out == yt).mean()), 2),
            "false_alarms": round(100 * float((out[normal] != 0).mean()), 2),
            "per_class": [round(100 * float((out[yt == c] == c).mean()), 1) for c in range(8)],
            "motion_found": f"{int((out[motion] == 3).sum())}/{int(motion.sum())}",
            "at_false_alarms_10_15_20": [at_false_alarms(t) for t in (10, 15, 20)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("folders", type=Path, nargs="+")
    a = sub.add_parser("ab")
    a.add_argument("cols", help="comma-separated indices into NAMES ('' = baseline)")
    a.add_argument("seeds", type=int)
    a.add_argument("--data", type=Path, required=True, help="a dataset built by 'streamwatch dataset build' (ds_v3)")
    a.add_argument("--val", action="store_true", help="fit on train, score val (choose designs here)")
    args = ap.parse_args()
    if args.cmd == "measure":
        for f in args.folders:
            measure(f)
    else:
        cols = [int(c) for c in args.cols.split(",")] if args.cols else []
        print(json.dumps(ab(args.data, cols, args.seeds, args.val)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
