"""Source-grouped cross-validation of the evidence fusion's design choices.

The fusion (streamwatch.model.fusion) is fitted at export on the training and validation
splits. Which fitting data, how many hidden units and which measurements were chosen here,
without touching the test split: the validation split's source files are dealt into 4 groups;
each group is predicted by a fusion fitted on the training split plus the other 3 groups, so
every validation image is scored by a fusion that never saw its source file.

    python bench/fusion_cv.py --data DATASET --checkpoint best.pt [--variant eca_1 --size 112 --tiles 2]
    python bench/fusion_cv.py --data DATASET --checkpoint best.pt --extra EXT1/train --extra EXT2/train \
        --configs network,shipped,extra,extra-measurements

``--extra``: folders of further samples (``dataset build --first-index``: new degradations of
the training split's sources) to fit on. The "extra" configurations leave the training split
out of the fit: a network is over-confident on the very images it was trained on, and a fusion
fitted on them learns to trust its ``normal`` too much.

``--video DIR``: the output of ``streamwatch dataset video`` for the training split (``DIR/train``)
and the validation split (``DIR/val``): faults played through H.264 and decoded. The "video"
configurations add ``DIR/train`` to the fit; with ``--video`` every configuration is also scored on
``DIR/val`` (the validation scenes as a camera feed), by a fusion fitted without any validation
image (training split, plus ``DIR/train`` for the video configurations).

Prints accuracy, false-alarm rate and per-class accuracy per configuration (one line each).
Needs the train extra (torch). Measurements and views are cached under DATASET/.cache.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402


#: Configurations this bench can cross-validate (``--configs``), in the default order.
CONFIGS = ("network", "logistic-val", "logistic", "shipped", "normal-weight-3", "network-dropout", "measurements",
           "extra", "extra-measurements", "video", "video-measurements")


def _source_groups(data: Path, split_dir: Path, folds: int) -> np.ndarray:
    """Fold index per image of split_dir (in list_images order), by source file."""
    from streamwatch.train.dataset import list_images

    source = {}
    with open(data / "samples.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            source[Path(row["file"]).name] = row["source"]
    items = list_images(split_dir)
    return np.array([int(hashlib.sha1(source[p.name].encode()).hexdigest(), 16) % folds for p, _ in items])


def _report(label: str, probabilities: np.ndarray, y: np.ndarray) -> dict:
    pred = probabilities.argmax(1)
    per_class = [float((pred[y == k] == k).mean() * 100) if (y == k).any() else float("nan") for k in range(len(CLASS_NAMES))]
    res = {"config": label, "accuracy": float((pred == y).mean() * 100),
           "false_alarm": float((pred[y == 0] != 0).mean() * 100), "per_class": per_class}
    print(f"{label:34s} acc {res['accuracy']:6.2f}  FAR {res['false_alarm']:5.1f} | "
          + " ".join(f"{v:5.1f}" for v in per_class), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--variant", default="eca_1")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="another folder of DIR/<class>/ images to fit on (repeatable)")
    ap.add_argument("--video", type=Path, default=None,
                    help="'dataset video' output with train/ and val/ (fit on train/, also score on val/)")
    ap.add_argument("--configs", default=None,
                    help=f"comma-separated subset of {','.join(CONFIGS)} (default: all; the extra ones with --extra)")
    args = ap.parse_args(argv)
    if args.configs is None:
        chosen = [c for c in CONFIGS if (args.extra or not c.startswith("extra")) and (args.video or not c.startswith("video"))]
    else:
        chosen = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    if any(c.startswith("extra") for c in chosen) and not args.extra:
        ap.error("the extra configurations need --extra")
    if any(c.startswith("video") for c in chosen) and not args.video:
        ap.error("the video configurations need --video")

    import torch

    from streamwatch.model.preprocess import Geometry
    from streamwatch.train.export import fit_fusion, load_model
    from streamwatch.train.trainer import features_cache, predict_arrays, views_cache

    torch.set_num_threads(args.threads)
    geom = Geometry(args.size, args.tiles)
    model = load_model(args.checkpoint, args.variant, geom)
    def scored(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        views, y = views_cache(folder, geom, workers=args.threads)
        feats, _ = features_cache(folder, workers=args.threads)
        return predict_arrays(model, views), feats, y

    needs_train = any(not c.startswith("extra") and c != "network" for c in chosen)
    empty = (np.zeros((0, len(CLASS_NAMES)), np.float32), np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
    p_va, f_va, y_va = scored(args.data / "val")
    p_tr, f_tr, y_tr = scored(args.data / "train") if needs_train else empty
    extras = [scored(d) for d in args.extra]
    p_ex = np.vstack([e[0] for e in extras]) if extras else empty[0]
    f_ex = np.vstack([e[1] for e in extras]) if extras else empty[1]
    y_ex = np.concatenate([e[2] for e in extras]) if extras else empty[2]
    p_vt, f_vt, y_vt = scored(args.video / "train") if args.video else empty
    p_vv, f_vv, y_vv = scored(args.video / "val") if args.video else empty
    groups = _source_groups(args.data, args.data / "val", args.folds)
    print(f"{len(y_tr)} training + {len(y_ex)} extra + {len(y_va)} validation images, {args.folds} source groups; "
          "per-class order: " + " ".join(CLASS_NAMES))

    def cross_validate(label: str, with_train: bool = True, hidden: int = 64, normal_weight: float = 2.0,
                       use_network: bool = True, with_extra: bool = False, network_dropout: float = 0.0,
                       with_video: bool = False) -> dict:
        def fit(p, f, y):
            if with_video:
                p, f, y = np.vstack([p_vt, p]), np.vstack([f_vt, f]), np.concatenate([y_vt, y])
            if not use_network:
                p = np.full_like(p, 1.0 / p.shape[1])
            return fit_fusion(p, f, y, hidden=hidden, normal_weight=normal_weight, network_dropout=network_dropout)

        def network_or_flat(p):
            return p if use_network else np.full_like(p, 1.0 / p.shape[1])

        if args.video is not None and (with_train or with_extra):
            # The validation scenes as a camera feed, scored by a fusion that saw no validation image
            # (a configuration fitted on the validation split alone has nothing left to fit on).
            p, f, y = (p_tr, f_tr, y_tr) if with_train else (p_ex, f_ex, y_ex)
            _report(label + " [val video]", fit(p, f, y).apply(network_or_flat(p_vv), f_vv), y_vv)
        out = np.zeros_like(p_va)
        for g in range(args.folds):
            fit_rows, held = groups != g, groups == g
            p, f, y = p_va[fit_rows], f_va[fit_rows], y_va[fit_rows]
            if with_train:
                p, f, y = np.vstack([p_tr, p]), np.vstack([f_tr, f]), np.concatenate([y_tr, y])
            if with_extra:
                p, f, y = np.vstack([p_ex, p]), np.vstack([f_ex, f]), np.concatenate([y_ex, y])
            out[held] = fit(p, f, y).apply(network_or_flat(p_va[held]), f_va[held])
        return _report(label, out, y_va)

    def network_alone() -> dict:
        if args.video is not None:
            _report("network alone [val video]", p_vv, y_vv)
        return _report("network alone", p_va, y_va)

    runs = {
        "network": network_alone,
        "logistic-val": lambda: cross_validate("logistic, fitted on val only", with_train=False, hidden=0),
        "logistic": lambda: cross_validate("logistic, train + val", hidden=0),
        "shipped": lambda: cross_validate("hidden 64, train + val", hidden=64),
        "normal-weight-3": lambda: cross_validate("hidden 64, normal weight 3", hidden=64, normal_weight=3.0),
        "network-dropout": lambda: cross_validate("hidden 64, train + val, network dropout 0.5", network_dropout=0.5),
        "measurements": lambda: cross_validate("hidden 64, measurements only", hidden=64, use_network=False),
        "extra": lambda: cross_validate("hidden 64, extra + val", with_train=False, with_extra=True),
        "extra-measurements": lambda: cross_validate("hidden 64, extra + val, measurements only", with_train=False,
                                                     with_extra=True, use_network=False),
        "video": lambda: cross_validate("hidden 64, train + val + video train, network dropout 0.5", network_dropout=0.5,
                                        with_video=True),
        "video-measurements": lambda: cross_validate("hidden 64, train + val + video train, measurements only",
                                                     use_network=False, with_video=True),
    }
    assert set(runs) == set(CONFIGS)
    for name in chosen:
        runs[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
