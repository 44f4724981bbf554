"""Fusion designs side by side: which model turns [network, measurements] into the verdict.

Runs the shipped network (ONNX) and :func:`streamwatch.model.fusion.frame_features` over two
splits of a built dataset (by default ``train`` to fit, ``val`` to score: never the test
split for a choice), then fits and scores, in one run:

* the network alone;
* the shipped design (:func:`streamwatch.train.export.fit_fusion`: one hidden layer, normal
  weight 4, network dropout 0.5; ``--members`` seeds averaged);
* gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``, normal weight 4)
  on the same inputs and on the measurements alone - only when scikit-learn is installed
  (it is not a dependency of streamwatch);
* test-time flipping: the network's probabilities averaged (geometric mean) over the frame
  and its mirror image, fed to the same fitted fusion.

Prints one line per design: accuracy, false-alarm rate, per-class accuracy (class order of
``streamwatch.CLASS_NAMES``).

    python bench/fusion_models.py --data /work/scratch/model/ds_v3 [--fit train] [--score val] [--every N]
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402


def measure_split(clf, data: Path, split: str, flip: bool = False, every: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(network probabilities, measurements, labels) of every ``every``-th image of one split."""
    from tqdm import tqdm

    with open(data / "samples.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split][::every]
    probs, feats = [], []
    with ThreadPoolExecutor(2) as pool:
        for i in tqdm(range(0, len(rows), 32), desc=f"{split}{' mirrored' if flip else ''}", unit="batch"):
            images = [cv2.imread(r["file"]) for r in rows[i : i + 32]]
            if flip:
                images = [cv2.flip(im, 1) for im in images]
            inputs = list(pool.map(clf.frame_inputs, images))
            probs.append(clf.predict_views(np.stack([v for v, _ in inputs])))
            feats.append(np.stack([f for _, f in inputs]))
    labels = np.array([CLASS_NAMES.index(r["label"]) for r in rows])
    return np.concatenate(probs), np.concatenate(feats), labels


def line(name: str, probabilities: np.ndarray, labels: np.ndarray) -> str:
    pred = probabilities.argmax(1)
    per_class = [(pred[labels == k] == k).mean() * 100 for k in range(len(CLASS_NAMES))]
    return (f"{name:36s} acc {100 * (pred == labels).mean():6.2f}  FAR {100 * (pred[labels == 0] != 0).mean():6.2f}  | "
            + " ".join(f"{v:5.1f}" for v in per_class))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--fit", default="train")
    ap.add_argument("--score", default="val")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--every", type=int, default=1, help="use every n-th image of both splits (a quick run)")
    args = ap.parse_args(argv)
    if args.fit == "test":
        ap.error("never fit on the test split")

    import torch

    from streamwatch.model.fusion import Fusion
    from streamwatch.model.runtime import Classifier
    from streamwatch.train.export import FUSION_NETWORK_DROPOUT, FUSION_NORMAL_WEIGHT, fit_fusion

    torch.set_num_threads(2)
    clf = Classifier(None, threads=2)
    p_fit, f_fit, y_fit = measure_split(clf, args.data, args.fit, every=args.every)
    p_score, f_score, y_score = measure_split(clf, args.data, args.score, every=args.every)
    p_mirror, _, _ = measure_split(clf, args.data, args.score, flip=True, every=args.every)
    print(f"fit on {args.fit} ({len(y_fit)} images), scored on {args.score} ({len(y_score)}); classes "
          + " ".join(CLASS_NAMES))
    print(line("network alone", p_score, y_score))
    fits = [fit_fusion(p_fit, f_fit, y_fit, network_dropout=FUSION_NETWORK_DROPOUT, seed=s) for s in range(args.members)]
    fusion = Fusion.ensemble(fits)
    print(line(f"shipped design ({args.members} fits)", fusion.apply(p_score, f_score), y_score))
    tta = np.exp(0.5 * (np.log(p_score + 1e-6) + np.log(p_mirror + 1e-6)))
    tta /= tta.sum(1, keepdims=True)
    print(line("network, mirror-averaged", tta, y_score))
    print(line("shipped design, mirror-averaged net", fusion.apply(tta, f_score), y_score))
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        print("scikit-learn not installed: gradient-boosted trees skipped")
        return 0
    weight = np.where(y_fit == 0, FUSION_NORMAL_WEIGHT, 1.0)
    for name, x_fit, x_score in (("boosted trees, network + measures", np.hstack([np.log(p_fit + 1e-4), f_fit]),
                                  np.hstack([np.log(p_score + 1e-4), f_score])),
                                 ("boosted trees, measures only", f_fit, f_score)):
        trees = HistGradientBoostingClassifier(max_iter=300, max_leaf_nodes=15, l2_regularization=1.0, random_state=0)
        trees.fit(x_fit, y_fit, sample_weight=weight)
        print(line(name, trees.predict_proba(x_score), y_score))
    return 0


if __name__ == "__main__":
    sys.exit(main())
