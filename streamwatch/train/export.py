"""Export a trained network to ONNX with streamwatch metadata, and save the
plain state dict (``torch.load(..., weights_only=True)`` loads it).

The ONNX graph takes ``input`` (batch, V, 3, S, S) float32 views from
``make_views`` and returns ``logits`` (batch, 8); the runtime applies softmax.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from streamwatch import CLASS_NAMES, __version__
from streamwatch.model.network import build_model
from streamwatch.model.preprocess import Geometry
from streamwatch.model.runtime import (META_CLASSES, META_GEOMETRY, META_OUTPUT, META_TRAINING, META_VARIANT,
                                       META_VERSION)
from streamwatch.train.onnx_predict import write_onnx_graph


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict, or the ``model`` entry of a training checkpoint."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def load_model(path: str | Path, variant: str, geometry: Geometry) -> torch.nn.Module:
    model = build_model(variant, views=geometry.views)
    model.load_state_dict(load_state_dict(path))
    return model.eval()


def training_summary(data_dir: str | Path | None) -> dict:
    """Short provenance summary from a dataset's dataset.json (if any)."""
    if data_dir is None:
        return {}
    f = Path(data_dir) / "dataset.json"
    if not f.exists():
        return {}
    d = json.loads(f.read_text())
    return {
        "seed": d.get("seed"),
        "per_class": d.get("per_class"),
        "train_sources": [s["file"] for s in d["sources"]["train"]],
        "val_sources": [s["file"] for s in d["sources"]["val"]],
        "test_sources": [s["file"] for s in d["sources"]["test"]],
        "excluded": d.get("excluded", []),
        "footage": "real footage of ../shared/data/train (see MANIFEST.tsv); faults synthesised by streamwatch.train.degrade",
    }


def export_onnx(model: torch.nn.Module, geometry: Geometry, out_path: str | Path, variant: str,
                version: str | None = None, training: dict | None = None, check: bool = True,
                extra_meta: dict[str, str] | None = None) -> dict[str, str]:
    """Write the ONNX file; returns the metadata written."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    tmp = out_path.with_suffix(".tmp.onnx")
    write_onnx_graph(model, geometry, tmp)
    proto = onnx.load(str(tmp))
    # The fusion is part of what the model predicts: two exports of one network with different
    # fusions must not share a version (payloads and the registry name models by it).
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values()))
    digest.update(json.dumps(extra_meta or {}, sort_keys=True).encode())
    weights_hash = digest.hexdigest()[:10]
    if version is None:
        version = f"{__version__}+{variant}.{geometry.size}x{geometry.tiles}.{_dt.date.today():%Y%m%d}.{weights_hash}"
    meta = {
        META_CLASSES: json.dumps(list(CLASS_NAMES)),
        META_GEOMETRY: geometry.to_json(),
        META_VERSION: version,
        META_VARIANT: variant,
        META_OUTPUT: "logits",
        META_TRAINING: json.dumps(training or {}),
        "streamwatch.input": "make_views(frame_bgr, geometry): view 0 = whole frame downscaled, views 1.. = native-resolution tiles; (x/255-0.5)/0.25, BGR",
        **(extra_meta or {}),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    proto.producer_name = "streamwatch"
    proto.producer_version = __version__
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    tmp.unlink(missing_ok=True)
    if check:
        parity(model, out_path, geometry)
    return meta


def parity(model: torch.nn.Module, onnx_path: str | Path, geometry: Geometry, n: int = 4, seed: int = 0) -> float:
    """Max |softmax difference| between torch and onnxruntime on random views."""
    from streamwatch.model.runtime import Classifier

    clf = Classifier(onnx_path)
    x = np.random.default_rng(seed).standard_normal((n, geometry.views, 3, geometry.size, geometry.size)).astype(np.float32)
    with torch.no_grad():
        pt = torch.softmax(model.eval()(torch.from_numpy(x)), 1).numpy()
    ox = clf.predict_views(x)
    diff = float(np.abs(pt - ox).max())
    if diff > 1e-3 or not (pt.argmax(1) == ox.argmax(1)).all():
        raise RuntimeError(f"ONNX export of {onnx_path} disagrees with torch (max diff {diff:.2e})")
    return diff


def save_state_dict(model: torch.nn.Module, path: str | Path) -> None:
    """Plain dict of tensors (loadable with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, path)


def fit_class_bias(logits: np.ndarray, labels: np.ndarray, rounds: int = 3, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-class logit offsets that maximise accuracy on a held-out set
    (coordinate ascent over a grid; the first class's offset stays 0).

    A prior correction for an under-trained model: it shifts decisions
    between classes, it does not add information. Fit it on the validation
    split only, never on the test split.
    """
    grid = np.linspace(-3, 3, 61) if grid is None else grid
    k = logits.shape[1]
    bias = np.zeros(k, np.float32)

    def acc(b: np.ndarray) -> float:
        return float(((logits + b).argmax(1) == labels).mean())

    best = acc(bias)
    for _ in range(rounds):
        for c in range(1, k):
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                a = acc(trial)
                if a > best + 1e-9:
                    best, bias = a, trial
    return bias


def calibrate_head(model: torch.nn.Module, data_dir: str | Path, geometry: Geometry, threads: int = 2) -> dict:
    """Fit :func:`fit_class_bias` on data_dir/<class>/ images and add it to the
    classifier bias in place. Returns before/after accuracies and the offsets."""
    from streamwatch.train.trainer import to_input, views_cache

    torch.set_num_threads(threads)
    x, y = views_cache(data_dir, geometry, workers=2, progress=False)
    outs = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(y), 64):
            outs.append(model(to_input(torch.from_numpy(np.ascontiguousarray(x[i : i + 64])))).numpy())
    logits = np.concatenate(outs)
    bias = fit_class_bias(logits, y)
    with torch.no_grad():
        model.head[1].bias += torch.from_numpy(bias)
    return {"data": str(data_dir), "accuracy_before": float((logits.argmax(1) == y).mean()),
            "accuracy_after": float(((logits + bias).argmax(1) == y).mean()),
            "class_bias": {c: float(b) for c, b in zip(CLASS_NAMES, bias)}}


#: Weight of ``normal`` samples in the fusion fit. A false alarm on a healthy camera costs an
#: operator more than a fault seen a sample later. 4 in sessions 8-21 (with a 10-fit ensemble the
#: most accurate of 2, 3, 4, 5, 6, 8 on session 8's four validation sets); 5 since session 22, with
#: features version 7 and the procedural scenes in the fit: fewer false alarms *and* more faults
#: found than 4 on all seven test sets, over four seed sets (docs/results.md, session 22).
FUSION_NORMAL_WEIGHT = 5.0
#: Hidden units of the fusion (0 = logistic regression). Chosen by source-grouped
#: cross-validation on the validation split (docs/results.md).
FUSION_HIDDEN = 64
#: Share of rows whose network probabilities are hidden in each minibatch of the fusion fit
#: (:func:`fit_fusion`). Chosen by the same cross-validation (docs/results.md).
FUSION_NETWORK_DROPOUT = 0.5
#: Fusion fits (seeds 0..n-1) averaged into the shipped fusion (:meth:`Fusion.ensemble`). One fit's
#: operating point between ``normal`` and the scene-dependent faults moves with its seed; the
#: average does not (docs/results.md, session 8).
FUSION_MEMBERS = 10


def fit_fusion_on(model: torch.nn.Module, data_dirs: Path | str | list, geometry: Geometry, threads: int = 2,
                  hidden: int = FUSION_HIDDEN, every: int = 1, progress: bool = False,
                  members: int = FUSION_MEMBERS):
    """Fit :func:`fit_fusion` on the images of ``data_dirs`` (each DIR/<class>/; the training
    and validation splits - never the test split). The network runs on the cached views
    (:func:`streamwatch.train.trainer.views_cache`) and the measurements are cached beside
    them (:func:`~streamwatch.train.trainer.features_cache`). ``every``: use every n-th image
    of each folder; ``members``: fits with seeds 0..members-1, averaged (:meth:`Fusion.ensemble`).
    Returns (fusion, report)."""
    from streamwatch.model.fusion import Fusion
    from streamwatch.train.trainer import features_cache, predict_arrays, probabilities_cache, views_cache

    if members > 1 and not hidden:
        raise ValueError("an ensemble of fusion fits needs a hidden layer (--fusion-hidden > 0)")
    torch.set_num_threads(threads)
    dirs = [Path(d) for d in (data_dirs if isinstance(data_dirs, (list, tuple)) else [data_dirs])]
    probs, feats, labels = [], [], []
    model.eval()
    for d in dirs:
        step = max(1, every)
        if step == 1:  # the whole folder: its predictions are worth keeping for the next export
            p_dir, y = probabilities_cache(model, d, geometry, workers=threads, progress=progress)
        else:  # basic slicing keeps the memory-mapped views on disk
            views, y = views_cache(d, geometry, workers=threads, progress=progress)
            p_dir = predict_arrays(model, views[::step])
        measured, y2 = features_cache(d, workers=threads, progress=progress)
        if len(y2) != len(y) or not (y2 == y).all():
            raise RuntimeError(f"views, predictions and measurements caches of {d} disagree; delete {d.parent / '.cache'}")
        probs.append(p_dir)
        feats.append(measured[::step])
        labels.append(y[::step])
    p, f, y = np.concatenate(probs), np.concatenate(feats), np.concatenate(labels)
    fits = [fit_fusion(p, f, y, hidden=hidden, network_dropout=FUSION_NETWORK_DROPOUT, seed=seed)
            for seed in range(max(1, members))]
    fusion = fits[0] if len(fits) == 1 else Fusion.ensemble(fits)
    fused = fusion.apply(p, f)
    normal = y == CLASS_NAMES.index("normal")
    report = {"data": [str(d) for d in dirs], "every": every, "n": int(len(y)), "hidden": hidden,
              "accuracy_network": float((p.argmax(1) == y).mean()),
              "accuracy_fused": float((fused.argmax(1) == y).mean()),
              "false_alarm_network": float((p[normal].argmax(1) != 0).mean()) if normal.any() else None,
              "false_alarm_fused": float((fused[normal].argmax(1) != 0).mean()) if normal.any() else None,
              "members": len(fits), "normal_weight": FUSION_NORMAL_WEIGHT, "network_dropout": FUSION_NETWORK_DROPOUT}
    return fusion, report


def fit_fusion(probabilities: np.ndarray, features: np.ndarray, labels: np.ndarray, weight_decay: float = 1e-3,
               normal_weight: float = FUSION_NORMAL_WEIGHT, hidden: int = FUSION_HIDDEN, epochs: int = 60,
               seed: int = 0, network_dropout: float = 0.0):
    """Class-weighted fit of :class:`streamwatch.model.fusion.Fusion` (AdamW, minibatches of
    256, light label smoothing; deterministic for a seed).

    ``network_dropout``: share of training rows whose network probabilities are replaced by a
    uniform distribution in each minibatch. The network is far more confident on the scenes it
    was trained on than on new ones; hiding its verdict from part of the rows keeps the fusion
    from leaning on it where the measurements alone can decide."""
    from streamwatch.model.fusion import Fusion

    gen = torch.Generator().manual_seed(seed)
    mean = features.mean(0)
    scale = features.std(0) + 1e-6
    x = torch.from_numpy(np.hstack([np.log(probabilities + 1e-4), (features - mean) / scale]).astype(np.float32))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    k = probabilities.shape[1]
    if hidden:
        first = torch.nn.Linear(x.shape[1], hidden)
        last = torch.nn.Linear(hidden, k)
        for layer in (first, last):  # seeded initialisation (nn.Linear's default draws from the global RNG)
            bound = 1.0 / np.sqrt(layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.uniform_(-bound, bound, generator=gen)
        net = torch.nn.Sequential(first, torch.nn.ReLU(), last)
    else:
        net = torch.nn.Linear(x.shape[1], k)
        with torch.no_grad():
            net.weight.zero_()
            net.bias.zero_()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=weight_decay)
    class_weight = torch.ones(k)
    class_weight[CLASS_NAMES.index("normal")] = normal_weight
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 256):
            b = order[i : i + 256]
            xb = x[b]
            if network_dropout > 0:
                hide = torch.rand(len(b), generator=gen) < network_dropout
                xb = xb.clone()
                xb[hide, :k] = float(np.log(1.0 / k + 1e-4))
            loss = torch.nn.functional.cross_entropy(net(xb), y[b], weight=class_weight, label_smoothing=0.02)
            opt.zero_grad()
            loss.backward()
            opt.step()
    mean, scale = mean.astype(np.float32), scale.astype(np.float32)
    if hidden:
        return Fusion(mean, scale, last.weight.detach().numpy().T.copy(), last.bias.detach().numpy().copy(),
                      first.weight.detach().numpy().T.copy(), first.bias.detach().numpy().copy())
    return Fusion(mean, scale, net.weight.detach().numpy().T.copy(), net.bias.detach().numpy().copy())
