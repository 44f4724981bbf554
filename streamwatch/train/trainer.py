"""Training loop: cached views, AdamW + cosine schedule, checkpoints + resume,
tqdm progress, JSON-lines log and a loss/accuracy curve PNG.

The dataset (``streamwatch dataset build``) is decoded once into a uint8 views
cache (``<data>/.cache/<split>_<S>x<tiles>.npy``) with exactly the serving
pre-processing (:func:`streamwatch.model.preprocess.make_views_u8`), so train
and serve never skew and the CPU spends its time on the network.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from streamwatch import CLASS_NAMES
from streamwatch.model.network import build_model, count_parameters
from streamwatch.model.preprocess import MEAN, STD, VIEWS_VERSION, Geometry, make_views_u8, runtime_frame
from streamwatch.train.dataset import list_images
from streamwatch.train.onnx_predict import onnx_probabilities


@dataclass
class TrainConfig:
    data: str
    out: str
    variant: str = "eca_1"
    size: int = 112
    tiles: int = 2
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.05
    warmup_steps: int = 150
    seed: int = 0
    threads: int = 2
    train_limit: int = 0  # use only the first N training samples (0 = all), for reduced budgets
    time_budget_min: float = 0.0  # wall-clock budget: LR anneals by max(step, time) progress, stop at 1 (0 = none)
    workers: int = 2  # processes for building the views cache
    init: str = ""  # state dict to start from (fine-tuning) instead of random weights; ignored on resume
    extra: dict = field(default_factory=dict)

    @property
    def geometry(self) -> Geometry:
        return Geometry(size=self.size, tiles=self.tiles)


# ------------------------------------------------------------------ cache


#: What the runtime does to a frame before views and measurements (``Classifier.frame_inputs``:
#: :func:`~streamwatch.model.preprocess.runtime_frame`); part of the cache keys, so a change here
#: recomputes them. 2: black edge bars cut away (session 10).
INPUT_VERSION = 2


def _read_as_runtime(path: str) -> np.ndarray:
    """An image file as ``Classifier.frame_inputs`` would see it."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"cannot read {path}")
    return runtime_frame(img)


def _views_of_file(args: tuple[str, int, int]) -> np.ndarray:
    path, size, tiles = args
    return make_views_u8(_read_as_runtime(path), Geometry(size, tiles))


def _cache_lookup(data_dir: Path, key: str, mmap: bool) -> tuple[list, np.ndarray, Path, Path, np.ndarray | None]:
    """(items, labels, array file, labels file, cached array or None) for a cache of
    data_dir/<class>/ images under ``data_dir.parent/.cache/<key>``; the cached array is
    returned only when its labels match the folder's images."""
    items = list_images(data_dir)
    if not items:
        raise FileNotFoundError(f"no images under {data_dir}/<class name>/")
    cache_dir = data_dir.parent / ".cache"
    xf, yf = cache_dir / f"{key}.npy", cache_dir / f"{key}.labels.npy"
    labels = np.array([c for _, c in items], np.int64)
    if xf.exists() and yf.exists():
        y = np.load(yf)
        if len(y) == len(labels) and (y == labels).all():
            return items, labels, xf, yf, np.load(xf, mmap_mode="r" if mmap else None)
    return items, labels, xf, yf, None


def _map_files(fn, tasks: list, workers: int, desc: str, progress: bool, mininterval: float = 0.1):
    """Yield ``fn(task)`` in order, on a fork pool of ``workers`` processes when > 1, with a
    tqdm bar when ``progress``; the pool is closed when the caller has consumed everything."""
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        it = pool.imap(fn, tasks, chunksize=32) if pool is not None else map(fn, tasks)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(tasks), desc=desc, unit="img", mininterval=mininterval)
        yield from it
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def views_cache(data_dir: str | Path, geometry: Geometry, workers: int = 2, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 views (N, V, 3, S, S) and int64 labels for data_dir/<class>/ images (cached under
    ``data_dir.parent/.cache``, keyed by the geometry and :data:`VIEWS_VERSION`)."""
    data_dir = Path(data_dir)
    key = f"{data_dir.name}_{geometry.size}x{geometry.tiles}_views_v{VIEWS_VERSION}_in{INPUT_VERSION}"
    items, labels, xf, yf, cached = _cache_lookup(data_dir, key, mmap=True)
    if cached is not None:
        return cached, labels
    xf.parent.mkdir(parents=True, exist_ok=True)
    x = np.lib.format.open_memmap(str(xf) + ".tmp.npy", mode="w+", dtype=np.uint8,
                                  shape=(len(items), geometry.views, 3, geometry.size, geometry.size))
    tasks = [(str(p), geometry.size, geometry.tiles) for p, _ in items]
    for i, v in enumerate(_map_files(_views_of_file, tasks, workers, f"views {data_dir.name}", progress)):
        x[i] = v
    x.flush()
    del x
    os.replace(str(xf) + ".tmp.npy", xf)
    np.save(yf, labels)
    return np.load(xf, mmap_mode="r"), labels


def _features_of_file(path: str) -> np.ndarray:
    from streamwatch.model.fusion import frame_features

    return frame_features(_read_as_runtime(path))


def features_cache(data_dir: str | Path, workers: int = 2, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """float32 fusion measurements (N, F) and int64 labels for data_dir/<class>/ images, in
    :func:`views_cache`'s order; cached beside the views, keyed by the measurements' version."""
    from streamwatch.model.fusion import FEATURE_NAMES, FEATURES_VERSION

    data_dir = Path(data_dir)
    key = f"{data_dir.name}_features_v{FEATURES_VERSION}_{len(FEATURE_NAMES)}_in{INPUT_VERSION}"
    items, labels, xf, yf, cached = _cache_lookup(data_dir, key, mmap=False)
    if cached is not None:
        return cached, labels
    paths = [str(p) for p, _ in items]
    x = np.stack(list(_map_files(_features_of_file, paths, workers, f"measurements {data_dir.name}", progress,
                                 mininterval=5))).astype(np.float32)
    xf.parent.mkdir(parents=True, exist_ok=True)
    np.save(str(xf) + ".tmp.npy", x)
    os.replace(str(xf) + ".tmp.npy", xf)
    np.save(yf, labels)
    return x, labels


def weights_digest(model: torch.nn.Module) -> str:
    """Short SHA-256 of a model's parameters and buffers (names, shapes and bytes): two
    models with this digest give the same outputs."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def probabilities_cache(model: torch.nn.Module, data_dir: str | Path, geometry: Geometry, workers: int = 2,
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """float32 network probabilities (N, C) and labels for data_dir/<class>/ images, in
    :func:`views_cache`'s order; cached beside the views, keyed by :func:`weights_digest`.

    Fitting the fusion (``streamwatch export --fuse-on``) on 45,000 images spends most of its
    time in this forward pass; a second export of the same network - another fusion setting,
    another set of folders - reuses it. The pass runs in onnxruntime
    (:func:`~streamwatch.train.onnx_predict.onnx_probabilities`: about 3x torch eager, the same
    probabilities to about 2e-6)."""
    data_dir = Path(data_dir)
    key = (f"{data_dir.name}_{geometry.size}x{geometry.tiles}_views_v{VIEWS_VERSION}_in{INPUT_VERSION}"
           f"_probs_{weights_digest(model)}")
    items, labels, xf, yf, cached = _cache_lookup(data_dir, key, mmap=False)
    if cached is not None:
        return cached, labels
    views, y = views_cache(data_dir, geometry, workers=workers, progress=progress)
    probs = onnx_probabilities(model, views, geometry, threads=workers)
    xf.parent.mkdir(parents=True, exist_ok=True)
    np.save(str(xf) + ".tmp.npy", probs)
    os.replace(str(xf) + ".tmp.npy", xf)
    np.save(yf, y)
    return probs, y


def to_input(views_u8: torch.Tensor) -> torch.Tensor:
    """Torch twin of preprocess.normalize (uint8 -> float32)."""
    return views_u8.float().mul_(1.0 / (255.0 * STD)).sub_(MEAN / STD)


# ------------------------------------------------------------------ train


def lr_at(step: int, progress: float, base: float, warmup: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 2 % of
    ``base`` as ``progress`` goes 0 -> 1."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def predict_arrays(model: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = to_input(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
            out.append(torch.softmax(model(xb), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


def per_class_accuracy(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {c: float((pred[y == i] == i).mean()) if (y == i).any() else float("nan") for i, c in enumerate(CLASS_NAMES)}


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("cross-entropy"), ax[0].legend(), ax[0].grid(alpha=0.3)
    ax[1].plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    ax[1].plot(ep, [h["val_acc"] for h in history], "o-", label="val")
    ax[1].set_xlabel("epoch"), ax[1].set_ylabel("accuracy"), ax[1].legend(), ax[1].grid(alpha=0.3)
    fig.suptitle(path.parent.name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train; returns the final summary (also in <out>/summary.json)."""
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    geom = cfg.geometry
    data = Path(cfg.data)
    xtr, ytr = views_cache(data / "train", geom, cfg.workers, progress)
    xva, yva = views_cache(data / "val", geom, cfg.workers, progress)
    if cfg.train_limit:
        order = np.random.default_rng([cfg.seed, 1]).permutation(len(ytr))[: cfg.train_limit]
        order.sort()
        xtr, ytr = xtr[order], ytr[order]
    xtr = np.ascontiguousarray(xtr)  # into memory
    xva = np.ascontiguousarray(xva)

    model = build_model(cfg.variant, views=geom.views).to(memory_format=torch.channels_last)
    if cfg.init:
        model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(ytr) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    start_epoch, step, history, best = 0, 0, [], -1.0
    ck = out / "last.pt"
    if resume and ck.exists():
        state = torch.load(ck, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history = json.loads(state["history"])
        best = float(state["best"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ck} at epoch {start_epoch}")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    t_start = time.time() - (history[-1]["elapsed_s"] if history else 0.0)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(ytr))
        tot_loss, tot_ok, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.variant} ep {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, mininterval=5)
        t_ep = time.time()
        for b in bar:
            idx = np.sort(perm[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            xb = to_input(torch.from_numpy(xtr[idx]))
            flip = torch.rand(len(idx)) < 0.5
            xb[flip] = xb[flip].flip(-1)
            yb = torch.from_numpy(ytr[idx])
            # Progress is the larger of the step fraction and, with a time
            # budget, the time fraction: on a busy machine the schedule still
            # anneals fully and the run ends within the budget.
            prog = step / max(1, total)
            if cfg.time_budget_min:
                prog = max(prog, (time.time() - t_start) / (cfg.time_budget_min * 60))
                if prog >= 1.0:
                    break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, prog, cfg.lr, cfg.warmup_steps)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tot_loss += float(loss.detach()) * len(idx)
            tot_ok += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            if b % 10 == 0:
                bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_ok / seen:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
        train_s = time.time() - t_ep
        p = predict_arrays(model, xva)
        pred = p.argmax(1)
        val_loss = float(F.nll_loss(torch.log(torch.from_numpy(p).clamp_min(1e-8)), torch.from_numpy(yva)))
        val_acc = float((pred == yva).mean())
        rec = {"epoch": epoch + 1, "step": step, "train_loss": tot_loss / max(seen, 1), "train_acc": tot_ok / max(seen, 1),
               "val_loss": val_loss, "val_acc": val_acc, "val_per_class": per_class_accuracy(yva, pred),
               "train_s": train_s, "train_samples_per_s": seen / max(train_s, 1e-9),
               "elapsed_s": time.time() - t_start}
        history.append(rec)
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items() if k != "val_per_class"}), flush=True)
        if val_acc > best:
            best = val_acc
            torch.save(model.state_dict(), out / "best.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step,
                    "history": json.dumps(history), "best": best, "torch_rng": torch.get_rng_state()}, out / "last.pt.tmp")
        os.replace(out / "last.pt.tmp", ck)
        plot_curves(history, out / "curves.png")
        if cfg.time_budget_min and (time.time() - t_start) / 60 >= cfg.time_budget_min:
            print(f"time budget of {cfg.time_budget_min} min reached in epoch {epoch + 1}")
            break
    summary = {"variant": cfg.variant, "geometry": asdict(geom), "params": count_parameters(model),
               "epochs_done": len(history), "best_val_acc": best, "history": history,
               "train_samples": int(len(ytr))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
