"""Evaluate a model on a folder with one sub-folder per class name.

Works on an ONNX model through :class:`streamwatch.model.runtime.Classifier`
(no torch needed); a torch checkpoint (``.pt``) works too when torch is
installed (variant and geometry then come from the arguments).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.checks.classical import neutralise_decoder_tint
from streamwatch.model.preprocess import Geometry, make_views
from streamwatch.train.dataset import list_images

NORMAL = CLASS_NAMES.index("normal")


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """The ``evaluate --json`` object for true/predicted class indices."""
    k = len(CLASS_NAMES)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    per_class = {}
    for i, c in enumerate(CLASS_NAMES):
        n = int(conf[i].sum())
        if n:
            per_class[c] = {"accuracy": float(conf[i, i] / n), "n": n}
    total = int(conf.sum())
    n_norm = int(conf[NORMAL].sum())
    return {
        "accuracy": float(np.trace(conf) / total) if total else None,
        "per_class": per_class,
        "confusion": conf.tolist(),
        "false_alarm_rate": float((n_norm - conf[NORMAL, NORMAL]) / n_norm) if n_norm else None,
    }


Predictor = Callable[[list[np.ndarray]], np.ndarray]  # BGR frames -> (N, 8) probabilities


def _onnx_predictor(model_path: str | Path | None, threads: int, fusion: bool = True,
                    runtime: str = "onnxruntime") -> tuple[Predictor, str]:
    """The daemon's own prediction path (``Classifier.predict``: views, network, fusion)."""
    from streamwatch.model.runtime import Classifier

    clf = Classifier(model_path, threads=threads, fusion=fusion, runtime=runtime)
    how = "network + fusion" if clf.fused else "network only"
    return clf.predict, f"{clf.path} ({clf.version}; {how}; {runtime})"


def _torch_predictor(model_path: str | Path, variant: str, geometry: Geometry, threads: int) -> tuple[Predictor, str]:
    import torch

    from streamwatch.train.export import load_model

    torch.set_num_threads(threads)
    model = load_model(model_path, variant, geometry)

    def run(frames: list[np.ndarray]) -> np.ndarray:
        # As Classifier.frame_inputs: a decoded grey video frame is made grey first.
        views = np.stack([make_views(neutralise_decoder_tint(f), geometry) for f in frames])
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(views)), 1).numpy()

    return run, f"{model_path} (torch, {variant}; network only)"


def classical_predict(img: np.ndarray) -> int:
    """The daemon's classical statistics as an 8-way classifier: the covered
    fault with the highest score if that score >= 0.5, else ``normal``."""
    from streamwatch.checks.classical import classical_scores

    scores = classical_scores(img)
    fault, score = max(scores.items(), key=lambda kv: kv[1])
    return CLASS_NAMES.index(fault) if score >= 0.5 else NORMAL


def evaluate_classical(data_dir: str | Path, progress: bool = False) -> dict:
    """Same metrics for the classical statistics fallback (no model)."""
    items = list_images(data_dir)
    if not items:
        raise FileNotFoundError(f"no images under {data_dir}/<class name>/ (class names: {', '.join(CLASS_NAMES)})")
    t0 = time.time()
    y_pred = []
    for p, _ in items:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError(f"cannot read image {p}")
        y_pred.append(classical_predict(img))
    out = metrics(np.array([c for _, c in items]), np.array(y_pred))
    out["_model"] = "classical statistics (streamwatch.checks.classical)"
    out["_seconds"] = time.time() - t0
    return out


def evaluate(data_dir: str | Path, model_path: str | Path | None = None, threads: int = 2, batch: int = 16,
             variant: str = "eca_1", geometry: Geometry | None = None, progress: bool = False,
             fusion: bool = True, runtime: str = "onnxruntime") -> dict:
    """Run the model over data_dir/<class>/ images; returns the metrics dict
    plus ``model`` and ``seconds`` (not part of the --json schema). ``fusion=False``: the
    network alone, without the whole-frame measurements (ONNX models with a fusion only)."""
    items = list_images(data_dir)
    if not items:
        raise FileNotFoundError(f"no images under {data_dir}/<class name>/ (class names: {', '.join(CLASS_NAMES)})")
    if model_path is not None and str(model_path).endswith((".pt", ".pth")):
        run, desc = _torch_predictor(model_path, variant, geometry or Geometry(), threads)
    else:
        run, desc = _onnx_predictor(model_path, threads, fusion, runtime)
    t0 = time.time()
    y_true, y_pred = [], []
    files: list[str] = []
    probabilities: list[np.ndarray] = []
    skipped: list[str] = []
    it = range(0, len(items), batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", unit="batch")
    for i in it:
        chunk = items[i : i + batch]
        frames, labels, paths = [], [], []
        for p, c in chunk:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                # One unreadable file must not sink an evaluation of thousands: skip and say so.
                print(f"evaluate: skipping unreadable image {p}", file=sys.stderr)
                skipped.append(str(p))
                continue
            frames.append(img)
            labels.append(c)
            paths.append(str(p))
        if not frames:
            continue
        probs = np.asarray(run(frames), np.float64)
        y_pred += list(probs.argmax(1))
        y_true += labels
        files += paths
        probabilities.append(probs)
    if not y_true:
        raise FileNotFoundError(f"no readable images under {data_dir}/<class name>/")
    out = metrics(np.array(y_true), np.array(y_pred))
    out["_skipped"] = skipped
    out["_predictions"] = {"files": files, "true": y_true, "probabilities": np.concatenate(probabilities)}
    out["_model"] = desc
    out["_seconds"] = time.time() - t0
    return out


def format_table(res: dict) -> str:
    lines = [f"model: {res.get('_model', '?')}", f"{'class':<16}{'n':>7}{'accuracy':>11}"]
    for c, v in res["per_class"].items():
        lines.append(f"{c:<16}{v['n']:>7}{v['accuracy'] * 100:>10.2f}%")
    lines.append(f"{'overall':<16}{sum(v['n'] for v in res['per_class'].values()):>7}{res['accuracy'] * 100:>10.2f}%")
    if res["false_alarm_rate"] is not None:
        lines.append(f"false alarm rate (normal predicted as a fault): {res['false_alarm_rate'] * 100:.2f}%")
    lines.append("confusion (rows true, columns predicted):")
    short = [c[:6] for c in CLASS_NAMES]
    lines.append(" " * 16 + "".join(f"{s:>8}" for s in short))
    for c, row in zip(CLASS_NAMES, res["confusion"]):
        if sum(row):
            lines.append(f"{c:<16}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)


def plot_confusion(res: dict, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.array(res["confusion"], dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(CLASS_NAMES)
    ax.set_xticks(range(k), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(k), CLASS_NAMES)
    for i in range(k):
        for j in range(k):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = res.get("accuracy")
    ax.set_title(title or (f"accuracy {acc * 100:.2f}%" if acc is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_predictions(res: dict, path: str | Path) -> int:
    """Write one CSV row per scored image of an :func:`evaluate` result - file, true class,
    predicted class, its probability and every class's probability - so the mistakes can be
    looked at picture by picture. Returns the number of rows."""
    import csv

    pred = res["_predictions"]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "true", "predicted", "confidence", *CLASS_NAMES])
        for file, true, probs in zip(pred["files"], pred["true"], pred["probabilities"]):
            best = int(probs.argmax())
            out.writerow([file, CLASS_NAMES[true], CLASS_NAMES[best], f"{probs[best]:.4f}",
                          *(f"{v:.4f}" for v in probs)])
    return len(pred["files"])


def public(res: dict) -> dict:
    """The documented JSON object (without the private _model/_seconds keys)."""
    return {k: res[k] for k in ("accuracy", "per_class", "confusion", "false_alarm_rate")}


def to_json(res: dict) -> str:
    return json.dumps(public(res))
