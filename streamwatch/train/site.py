"""Site adaptation: refresh the model from the site's own cameras (``streamwatch trainer``).

One refresh (see docs/site-adaptation.md):

1. **Site data** from the daemon's reservoir (:mod:`streamwatch.reservoir`):
   ``<camera>/normal/*.jpg`` (frames the current model called normal with high
   confidence while no fault was open) and ``<camera>/labels/<class>/*.jpg``
   (operator labels from ``streamwatch label``, taken as ground truth and used
   as they are). Fault frames under ``faults/`` are for review only and never
   used: nobody confirmed them.
2. **Split** into train / held-out by camera and time, deterministically: a
   frame's side is a hash of (seed, camera, kind, time bucket of
   ``trainer.split_minutes``), so frames taken close together (near duplicates)
   land on the same side and a frame keeps its side from one night to the next.
   A group that would end up entirely on one side (few frames, all in one
   bucket) holds out its newest ``heldout_share`` instead.
3. **Synthesis**: every normal site frame yields one sample per class with the
   same degradation code as ``streamwatch dataset build``
   (:func:`streamwatch.train.degrade.degrade`; ``frozen`` tears in another frame
   of the same camera), then a JPEG round trip at quality 75-95. The held-out
   samples are written to ``<state_dir>/trainer/heldout/<class>/`` so
   ``streamwatch evaluate --data`` can be run on them by hand.
4. **Replay**: a share ``trainer.replay_share`` of the fine-tuning set is drawn
   from the base training data (``<base_data>/train``) so the model does not
   forget what it knew.
5. **Fine-tune** the current model (the one the daemon runs: its state dict is
   the ``.pt`` beside its ONNX file - ``<state_dir>/models/<version>.pt`` for a
   promoted one, ``streamwatch/assets/model.pt`` for the shipped one - loaded
   with ``torch.load(weights_only=True)``), export the candidate to ONNX.
6. **Evaluate** candidate and current model, both through onnxruntime exactly as
   the daemon runs them, on (a) the held-out site samples and (b) the fixed base
   test set (the first ``base_test_per_class`` images per class of
   ``<base_data>/test`` in name order; its fingerprint is in the report).
7. **Gate** (:func:`gate`): promote only if the candidate loads, is not worse on
   the base test set by more than ``base_tolerance`` (accuracy), loses no more than
   ``base_class_drop`` on any single class of the base test set, and is better or
   equal on the site held-out set. Promotion goes through
   :meth:`ModelRegistry.promote` (atomic, checksummed, keeps N versions); the
   candidate's state dict is stored as ``<version>.pt`` beside it so the next
   refresh (and a rollback) can fine-tune from it.
8. **Report**: ``<state_dir>/trainer/reports/<time>.json`` with the decision, the
   reason, both models' metrics and the data used; the same summary is logged
   as ``trainer_decision``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import structlog

from streamwatch import CLASS_NAMES
from streamwatch.config import Config
from streamwatch.model.loader import ModelChoice, choose_model
from streamwatch.model.preprocess import Geometry, make_views_u8
from streamwatch.model.registry import ModelRegistry, RegistryError, sha256_file
from streamwatch.model.runtime import Classifier, ModelLoadError
from streamwatch.train import degrade as dg
from streamwatch.train.dataset import IMAGE_EXT, list_images
from streamwatch.train.evaluate import metrics as class_metrics

log = structlog.get_logger(__name__)

NORMAL = CLASS_NAMES.index("normal")
_EPS = 1e-9


class TrainerError(Exception):
    """The refresh cannot run (no base data, no state dict, ...); the message is for the operator."""


# ------------------------------------------------------------------ site frames


@dataclass(frozen=True)
class SiteFrame:
    path: Path
    camera: str
    label: str  # class name (ground truth)
    time: float  # UTC seconds
    origin: str  # "reservoir" (a normal frame, faults are synthesised over it) or "operator" (used as is)

    @property
    def key(self) -> str:
        return f"{self.camera}/{self.origin}/{self.label}/{self.path.name}"


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    for fmt in ("%Y%m%dT%H%M%S.%fZ", "%Y%m%dT%H%M%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def collect_site_frames(reservoir: Path) -> list[SiteFrame]:
    """Normal frames and operator labels of every camera folder in the reservoir."""
    frames: list[SiteFrame] = []
    reservoir = Path(reservoir)
    if not reservoir.is_dir():
        return frames
    for cam_dir in sorted(p for p in reservoir.iterdir() if p.is_dir()):
        camera = cam_dir.name
        slots: dict[str, Any] = {}
        index = cam_dir / "index.json"
        if index.is_file():
            try:
                slots = json.loads(index.read_text()).get("slots", {}) or {}
            except (OSError, ValueError):
                log.warning("trainer_reservoir_index_unreadable", path=str(index))
        normal_dir = cam_dir / "normal"
        if normal_dir.is_dir():
            for p in sorted(normal_dir.glob("*.jpg")):
                meta = slots.get(p.stem) or {}
                t = _parse_time(meta.get("time")) if isinstance(meta, dict) else None
                frames.append(SiteFrame(p, camera, "normal", t if t is not None else _mtime(p), "reservoir"))
        labels_dir = cam_dir / "labels"
        if labels_dir.is_dir():
            for class_dir in sorted(p for p in labels_dir.iterdir() if p.is_dir()):
                if class_dir.name not in CLASS_NAMES:
                    log.warning("trainer_unknown_label_folder", path=str(class_dir))
                    continue
                for p in sorted(class_dir.iterdir()):
                    if p.suffix.lower() in IMAGE_EXT and p.is_file():
                        t = _parse_time(p.stem)
                        frames.append(SiteFrame(p, camera, class_dir.name, t if t is not None else _mtime(p), "operator"))
    return frames


def _unit_hash(*parts: Any) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_site(frames: Sequence[SiteFrame], heldout_share: float = 0.25, split_minutes: float = 60.0,
               seed: int = 0) -> tuple[list[SiteFrame], list[SiteFrame]]:
    """(train, held-out), deterministic by camera and time (see the module docstring)."""
    groups: dict[tuple[str, str, str], list[SiteFrame]] = {}
    for f in frames:
        # Operator labels are split per class so a correction is both learned and checked.
        groups.setdefault((f.camera, f.origin, f.label if f.origin == "operator" else ""), []).append(f)
    train: list[SiteFrame] = []
    held: list[SiteFrame] = []
    bucket_s = split_minutes * 60.0
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda f: (f.time, f.path.name))
        side = [_unit_hash(seed, key[0], key[1], key[2], int(f.time // bucket_s)) < heldout_share for f in group]
        if len(group) >= 2 and (all(side) or not any(side)):
            k = max(1, int(round(len(group) * heldout_share)))
            side = [i >= len(group) - k for i in range(len(group))]
        for f, is_held in zip(group, side):
            (held if is_held else train).append(f)
    return train, held


# ------------------------------------------------------------------ synthesis


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise TrainerError(f"cannot read image {path}")
    return img


def _jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise TrainerError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def synthesise(frames: Sequence[SiteFrame], seed: int, stream: int) -> Iterator[tuple[str, int, np.ndarray, int]]:
    """(name, class index, BGR image, jpeg quality) samples for the frames.

    A reservoir (normal) frame yields one sample per class: the degradation of
    ``dataset build`` with its randomised type and severity, after an optional
    crop (70-100 %, native resolution kept) and mirror; ``frozen`` tears in
    another frame of the same camera. An operator label yields its frame as is.
    The randomness is seeded by the frame's name, so a frame gives the same
    samples in every run (``stream`` separates train and held-out).
    """
    by_camera: dict[str, list[SiteFrame]] = {}
    for f in frames:
        if f.origin == "reservoir":
            by_camera.setdefault(f.camera, []).append(f)
    for f in frames:
        base_seed = [seed, stream, zlib.crc32(f.key.encode())]
        img = cv2.imread(str(f.path), cv2.IMREAD_COLOR)
        if img is None:
            # The daemon rotates the reservoir while the trainer runs: a slot may be gone.
            log.warning("trainer_frame_unreadable", path=str(f.path))
            continue
        stem = f"{f.camera}_{f.origin[0]}_{f.path.stem}"
        if f.origin == "operator":
            rng = np.random.default_rng(base_seed)
            yield f"{stem}.jpg", CLASS_NAMES.index(f.label), img, int(rng.integers(85, 96))
            continue
        mates = [m for m in by_camera.get(f.camera, []) if m.path != f.path]
        for ci, label in enumerate(CLASS_NAMES):
            rng = np.random.default_rng(base_seed + [ci])
            x = img
            h, w = x.shape[:2]
            xy = None
            if rng.random() < 0.5 and w >= 64 and h >= 64:
                k = float(rng.uniform(0.7, 1.0))
                cw, ch = max(32, int(w * k)), max(32, int(h * k))
                xy = (int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch)
                x = x[xy[1] : xy[1] + ch, xy[0] : xy[0] + cw]
            flip = rng.random() < 0.5
            if flip:
                x = x[:, ::-1]
            x = np.ascontiguousarray(x)
            if rng.random() < 0.25:
                x = dg.blockiness(x, rng)
            other = None
            if label == "frozen" and mates:
                o = cv2.imread(str(mates[int(rng.integers(len(mates)))].path), cv2.IMREAD_COLOR)
                if o is not None and o.shape[:2] == (h, w):
                    if xy is not None:
                        o = o[xy[1] : xy[1] + xy[3], xy[0] : xy[0] + xy[2]]
                    other = np.ascontiguousarray(o[:, ::-1] if flip else o)
            out = dg.degrade(x, label, rng, other=other)
            yield f"{stem}_{label}.jpg", ci, out, int(rng.integers(75, 96))


def write_heldout(frames: Sequence[SiteFrame], out_dir: Path, seed: int) -> list[tuple[Path, int]]:
    """Held-out site samples as ``out_dir/<class>/*.jpg`` (replacing the previous set)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    items: list[tuple[Path, int]] = []
    for name, ci, img, q in synthesise(frames, seed, stream=2):
        path = tmp / CLASS_NAMES[ci] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, q]):
            raise TrainerError(f"cannot write {path}")
        items.append((out_dir / CLASS_NAMES[ci] / name, ci))
    tmp.mkdir(parents=True, exist_ok=True)
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return items


# ------------------------------------------------------------------ base data


def base_test_items(base_data: Path, per_class: int) -> list[tuple[Path, int]]:
    """The fixed base test set: the first ``per_class`` images of each class of ``<base_data>/test``."""
    test = Path(base_data) / "test"
    items = list_images(test)
    if not items:
        raise TrainerError(
            f"no base test set under {test}/<class>/: set trainer.base_data to a folder made by "
            "'streamwatch dataset build' (see docs/site-adaptation.md)")
    out: list[tuple[Path, int]] = []
    counts: dict[int, int] = {}
    for p, c in items:
        if counts.get(c, 0) < per_class:
            out.append((p, c))
            counts[c] = counts.get(c, 0) + 1
    return out


def fingerprint(items: Sequence[tuple[Path, int]]) -> str:
    """Hash of (name, size, class) of an image list: shows the base test set stayed the same."""
    digest = hashlib.sha256()
    for p, c in items:
        digest.update(f"{p.parent.name}/{p.name}:{p.stat().st_size}:{c}\n".encode())
    return digest.hexdigest()[:16]


def replay_items(base_data: Path, count: int, seed: int) -> list[tuple[Path, int]]:
    if count <= 0:
        return []
    items = list_images(Path(base_data) / "train")
    if not items:
        log.warning("trainer_no_replay_data", path=str(Path(base_data) / "train"),
                    hint="replay disabled; the base-test gate still guards against forgetting")
        return []
    order = np.random.default_rng([seed, 11]).permutation(len(items))[: min(count, len(items))]
    return [items[i] for i in sorted(order)]


# ------------------------------------------------------------------ evaluation and gate


def evaluate_models(models: dict[str, Classifier], items: Sequence[tuple[Path, int]], batch: int = 32,
                    tick: Callable[[], None] | None = None) -> dict[str, dict]:
    """``evaluate --json`` metrics of each model on the same images (views computed per geometry)."""
    preds: dict[str, list[int]] = {name: [] for name in models}
    truth: list[int] = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        images = [_read(p) for p, _ in chunk]
        truth += [c for _, c in chunk]
        by_geometry: dict[Geometry, np.ndarray] = {}
        for name, clf in models.items():
            g = clf.geometry
            if g not in by_geometry:
                by_geometry[g] = np.stack([clf.preprocess(img) for img in images])
            preds[name] += list(np.asarray(clf.predict_views(by_geometry[g])).argmax(1))
        if tick is not None:
            tick()
    y = np.array(truth, np.int64)
    return {name: class_metrics(y, np.array(p, np.int64)) for name, p in preds.items()}


@dataclass
class GateDecision:
    promote: bool
    reason: str
    base_ok: bool
    site_ok: bool
    classes_ok: bool = True


def gate(current: dict, candidate: dict, base_tolerance: float, base_class_drop: float = 1.0) -> GateDecision:
    """``current``/``candidate``: {"base": metrics, "site": metrics} (``evaluate --json`` objects).

    Promote only if base accuracy(candidate) >= base accuracy(current) - base_tolerance
    AND site accuracy(candidate) >= site accuracy(current)
    AND no class of the base test set loses more than ``base_class_drop`` accuracy
    (1.0 = no per-class check).
    """
    cb, kb = float(current["base"]["accuracy"]), float(candidate["base"]["accuracy"])
    cs, ks = float(current["site"]["accuracy"]), float(candidate["site"]["accuracy"])
    base_ok = kb >= cb - base_tolerance - _EPS
    site_ok = ks >= cs - _EPS
    parts = [
        f"base accuracy {kb:.4f} vs current {cb:.4f} ({'within' if base_ok else 'outside'} tolerance {base_tolerance:.4f})",
        f"site accuracy {ks:.4f} vs current {cs:.4f} ({'better or equal' if site_ok else 'worse'})",
    ]
    dropped = []
    cur_pc, cand_pc = current["base"].get("per_class") or {}, candidate["base"].get("per_class") or {}
    for name, cur in cur_pc.items():
        if name in cand_pc and float(cand_pc[name]["accuracy"]) < float(cur["accuracy"]) - base_class_drop - _EPS:
            dropped.append(f"{name} {float(cur['accuracy']):.3f} -> {float(cand_pc[name]['accuracy']):.3f}")
    if dropped:
        parts.append(f"base classes losing more than {base_class_drop:.3f}: {', '.join(dropped)}")
    classes_ok = not dropped
    return GateDecision(base_ok and site_ok and classes_ok, "; ".join(parts), base_ok, site_ok, classes_ok)


# ------------------------------------------------------------------ priority, lock, progress


_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "i386": 289, "armv7l": 314, "riscv64": 30, "ppc64le": 273}


def lower_priority(nice: int) -> dict[str, Any]:
    """Renice to ``nice`` and set the idle I/O class (Linux ``ioprio_set``); best effort."""
    applied: dict[str, Any] = {}
    try:
        current = os.nice(0)
        if nice > current:
            current = os.nice(nice - current)
        applied["nice"] = current
    except OSError as exc:
        applied["nice_error"] = str(exc)
    number = _IOPRIO_SET.get(platform.machine())
    if sys.platform.startswith("linux") and number is not None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            # IOPRIO_WHO_PROCESS = 1, pid 0 = this process; IOPRIO_CLASS_IDLE = 3 << 13.
            if libc.syscall(number, 1, 0, 3 << 13) == 0:
                applied["io_class"] = "idle"
            else:
                applied["io_class_error"] = os.strerror(ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            applied["io_class_error"] = str(exc)
    return applied


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TrainerError(f"another trainer run holds {path}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Progress:
    """tqdm on a terminal; otherwise a ``trainer_progress`` log line every ``every`` seconds."""

    def __init__(self, stage: str, total: int, tty: bool, every: float = 30.0):
        self.stage, self.total, self.every = stage, max(1, total), every
        self.done, self.t0, self.last = 0, time.monotonic(), time.monotonic()
        self.fields: dict[str, Any] = {}
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"trainer {stage}", unit="step", file=sys.stderr)

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        if self.bar is not None:
            self.bar.update(n)
            if fields:
                self.bar.set_postfix(**{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in fields.items()})
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self._log()

    def _log(self) -> None:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        log.info("trainer_progress", stage=self.stage, done=self.done, total=self.total,
                 elapsed_s=round(elapsed, 1), eta_s=round((self.total - self.done) / rate, 1) if rate else None,
                 **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.fields.items()})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------ fine-tuning


def state_dict_path(onnx_path: Path) -> Path:
    """Where the state dict of an ONNX model lives: the ``.pt`` beside it."""
    return Path(onnx_path).with_suffix(".pt")


def _views_array(path: Path, count: int, geometry: Geometry) -> np.ndarray:
    return np.lib.format.open_memmap(str(path), mode="w+", dtype=np.uint8,
                                     shape=(max(1, count), geometry.views, 3, geometry.size, geometry.size))


def build_training_set(train_frames: Sequence[SiteFrame], replay: Sequence[tuple[Path, int]], geometry: Geometry,
                       work: Path, seed: int, tty: bool) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """uint8 views (memory-mapped in ``work``) and labels: synthesised site samples + replay."""
    n_site = sum(len(CLASS_NAMES) if f.origin == "reservoir" else 1 for f in train_frames)
    x = _views_array(work / "train_views.npy", n_site + len(replay), geometry)
    y = np.zeros(n_site + len(replay), np.int64)
    bar = Progress("data", n_site + len(replay), tty)
    i = 0
    for _name, ci, img, q in synthesise(train_frames, seed, stream=1):
        x[i] = make_views_u8(_jpeg_round_trip(img, q), geometry)
        y[i] = ci
        i += 1
        bar.update()
    for p, ci in replay:
        x[i] = make_views_u8(_read(p), geometry)
        y[i] = ci
        i += 1
        bar.update()
    bar.close()
    x.flush()
    return x[:i], y[:i], {"site_samples": n_site, "replay_samples": len(replay)}


def fine_tune(state_dict: Path, variant: str, geometry: Geometry, x: np.ndarray, y: np.ndarray, *, epochs: int,
              batch_size: int, lr: float, seed: int, tty: bool) -> tuple[Any, list[dict]]:
    """Continue training the current model on (x, y); returns (model, per-epoch history)."""
    import torch
    import torch.nn.functional as F

    from streamwatch.train.export import load_model
    from streamwatch.train.trainer import lr_at, to_input

    torch.manual_seed(seed)
    model = load_model(state_dict, variant, geometry)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.02)
    steps_per_epoch = max(1, math.ceil(len(y) / batch_size))
    total = steps_per_epoch * epochs
    warmup = min(50, max(1, total // 10))
    bar = Progress("fine-tune", total, tty)
    history: list[dict] = []
    step = 0
    for epoch in range(epochs):
        model.train()
        perm = np.random.default_rng([seed, 5, epoch]).permutation(len(y))
        tot_loss, ok, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = np.sort(perm[b * batch_size : (b + 1) * batch_size])
            if len(idx) < 2:  # batch norm needs two samples
                continue
            xb = to_input(torch.from_numpy(np.ascontiguousarray(x[idx])))
            flip = torch.rand(len(idx)) < 0.5
            xb[flip] = xb[flip].flip(-1)
            yb = torch.from_numpy(y[idx])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, step / total, lr, warmup)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tot_loss += float(loss.detach()) * len(idx)
            ok += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(epoch=epoch + 1, loss=tot_loss / seen, acc=ok / seen)
        history.append({"epoch": epoch + 1, "train_loss": tot_loss / max(seen, 1), "train_acc": ok / max(seen, 1),
                        "samples": seen})
        log.info("trainer_epoch", **history[-1])
    bar.close()
    return model.eval(), history


# ------------------------------------------------------------------ promotion and report


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def promote_with_state(registry: ModelRegistry, onnx: Path, state: Path | None, version: str,
                       metrics: dict | None = None, note: str = "") -> Any:
    """Store ``state`` as ``<version>.pt`` beside the model, promote the ONNX, drop orphaned ``.pt`` files."""
    registry.root.mkdir(parents=True, exist_ok=True)
    target = registry.root / f"{version}.pt"
    if state is not None and Path(state).is_file():
        tmp = registry.root / f".{version}.pt.tmp"
        shutil.copyfile(state, tmp)
        os.replace(tmp, target)
    try:
        entry = registry.promote(onnx, version, metrics=metrics, note=note)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    kept = {e.version for e in registry.entries()}
    for pt in registry.root.glob("*.pt"):
        if pt.stem not in kept:
            pt.unlink(missing_ok=True)
    return entry


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _model_info(clf: Classifier, choice: ModelChoice | None = None) -> dict[str, Any]:
    info = {"version": clf.version, "variant": clf.variant, "path": str(clf.path), "sha256": clf.sha256,
            "geometry": {"size": clf.geometry.size, "tiles": clf.geometry.tiles}}
    if choice is not None:
        info["origin"] = choice.origin
    return info


def refresh(config: Config, *, candidate: Path | None = None, dry_run: bool = False,
            progress: bool | None = None, save_candidate: Path | None = None) -> dict[str, Any]:
    """One site refresh; returns the report (also written to ``<state_dir>/trainer/reports/``).

    ``candidate``: gate this ONNX model instead of fine-tuning one (its state dict,
    if any, is the ``.pt`` beside it). ``dry_run``: evaluate and decide, never promote.
    ``save_candidate``: keep a copy of the fine-tuned candidate (ONNX + state dict) in this
    folder whatever the decision (to inspect a rejected one).
    Raises :class:`TrainerError` when the refresh cannot run at all.
    """
    cfg = config.trainer
    tty = sys.stderr.isatty() if progress is None else progress
    stamp = _stamp()
    trainer_dir = config.state_dir / "trainer"
    report_path = trainer_dir / "reports" / f"{stamp}.json"
    n = 1
    while report_path.exists():  # two runs within one second (e.g. --candidate checks)
        report_path = trainer_dir / "reports" / f"{stamp}-{n}.json"
        n += 1
    t0 = time.monotonic()
    report: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "decision": None, "reason": None, "dry_run": dry_run,
                              "gate": {"base_tolerance": cfg.base_tolerance, "base_class_drop": cfg.base_class_drop,
                                       "rule": "base accuracy >= current - base_tolerance AND site accuracy >= current "
                                               "AND no base class accuracy < current - base_class_drop"},
                              "settings": cfg.model_dump(mode="json")}

    def finish(decision: str, reason: str, level: str = "info") -> dict[str, Any]:
        report["decision"], report["reason"] = decision, reason
        report["seconds"] = round(time.monotonic() - t0, 1)
        _atomic_json(report_path, report)
        getattr(log, level)("trainer_decision", decision=decision, reason=reason, report=str(report_path),
                            current=report.get("current", {}).get("version"),
                            candidate=report.get("candidate", {}).get("version"),
                            accuracy={k: {m: v[m]["accuracy"] for m in ("base", "site")}
                                      for k, v in report.get("metrics", {}).items()})
        report["report"] = str(report_path)
        return report

    with run_lock(trainer_dir / "lock"):
        import torch  # noqa: F401  (fail early, before any work, if the trainer extras are missing)

        torch.set_num_threads(cfg.threads)
        registry = ModelRegistry(config.state_dir / "models", keep=cfg.keep)
        choice = choose_model(config)
        if choice.origin == "config":
            report["warning"] = (f"model.path is set in the config ({choice.path}): the daemon runs that file and "
                                 "ignores promoted models")
            log.warning("trainer_model_path_pinned", path=str(choice.path))
        try:
            if choice.sha256 is not None and sha256_file(choice.path) != choice.sha256:
                raise ModelLoadError(f"model file {choice.path} does not match the registry's checksum")
            current = Classifier(choice.path, threads=cfg.threads)
        except (ModelLoadError, OSError) as exc:
            raise TrainerError(f"current model: {exc}") from None
        report["current"] = _model_info(current, choice)

        base = base_test_items(cfg.base_data, cfg.base_test_per_class)
        report["data"] = {"base_data": str(cfg.base_data), "base_test_images": len(base),
                          "base_test_fingerprint": fingerprint(base)}

        assert config.reservoir.dir is not None
        frames = collect_site_frames(config.reservoir.dir)
        normal = [f for f in frames if f.origin == "reservoir"]
        train_frames, held_frames = split_site(frames, cfg.heldout_share, cfg.split_minutes, cfg.seed)
        report["data"].update({
            "reservoir": str(config.reservoir.dir),
            "cameras": sorted({f.camera for f in frames}),
            "site_normal_frames": len(normal),
            "operator_labels": {c: sum(1 for f in frames if f.origin == "operator" and f.label == c)
                                for c in CLASS_NAMES if any(f.origin == "operator" and f.label == c for f in frames)},
            "site_train_frames": len(train_frames), "site_heldout_frames": len(held_frames),
        })
        log.info("trainer_data", **{k: v for k, v in report["data"].items() if k != "operator_labels"})
        if len(normal) < cfg.min_site_frames or not held_frames or (candidate is None and not train_frames):
            return finish("skipped", f"not enough site data: {len(normal)} normal frames (need {cfg.min_site_frames}), "
                                     f"{len(train_frames)} train / {len(held_frames)} held-out")
        heldout = write_heldout(held_frames, trainer_dir / "heldout", cfg.seed)
        report["data"]["site_heldout_samples"] = len(heldout)
        report["data"]["site_heldout_dir"] = str(trainer_dir / "heldout")

        work = trainer_dir / f"work-{stamp}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            if candidate is None:
                pt = state_dict_path(choice.path)
                if not pt.is_file():
                    raise TrainerError(f"no state dict {pt} beside the current model {choice.path}: cannot fine-tune")
                if not current.variant:
                    raise TrainerError(f"current model {choice.path} does not name its network variant")
                n_site = sum(len(CLASS_NAMES) if f.origin == "reservoir" else 1 for f in train_frames)
                n_replay = int(round(n_site * cfg.replay_share / (1.0 - cfg.replay_share)))
                replay = replay_items(cfg.base_data, n_replay, cfg.seed + int(stamp[:8]))
                x, y, counts = build_training_set(train_frames, replay, current.geometry, work, cfg.seed, tty)
                report["data"].update(counts)
                model, history = fine_tune(pt, current.variant, current.geometry, x, y, epochs=cfg.epochs,
                                           batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, tty=tty)
                report["fine_tune"] = {"from": str(pt), "history": history}
                from streamwatch.train.export import export_onnx, save_state_dict

                version = f"site-{stamp}"
                cand_path, cand_pt = work / f"{version}.onnx", work / f"{version}.pt"
                # The fine-tuned network keeps the current model's fusion: its measurements are the
                # same physics, and its network inputs the same classes.
                from streamwatch.model.fusion import META_FUSION

                fusion_meta = {META_FUSION: current.fusion.to_json()} if current.fusion is not None else {}
                export_onnx(model, current.geometry, cand_path, current.variant, version=version,
                            training={"site_refresh": stamp, "from": current.version,
                                      "site_samples": counts["site_samples"], "replay_samples": counts["replay_samples"],
                                      "cameras": report["data"]["cameras"]},
                            extra_meta=fusion_meta)
                save_state_dict(model, cand_pt)
                del x
                if save_candidate is not None:
                    Path(save_candidate).mkdir(parents=True, exist_ok=True)
                    for f in (cand_path, cand_pt):
                        shutil.copyfile(f, Path(save_candidate) / f.name)
                    report["saved_candidate"] = str(Path(save_candidate) / cand_path.name)
            else:
                cand_path = Path(candidate)
                cand_pt = state_dict_path(cand_path)
                version = None
            try:
                cand = Classifier(cand_path, threads=cfg.threads)
            except ModelLoadError as exc:
                report["candidate"] = {"path": str(cand_path)}
                return finish("rejected", f"candidate does not load: {exc}", "warning")
            version = version or cand.version
            report["candidate"] = _model_info(cand)
            if version != cand.version:
                return finish("rejected", f"candidate's version {cand.version} is not {version}", "warning")
            models = {"current": current, "candidate": cand}
            bar = Progress("evaluate", math.ceil(len(heldout) / 32) + math.ceil(len(base) / 32), tty)
            site_m = evaluate_models(models, heldout, tick=bar.update)
            base_m = evaluate_models(models, base, tick=bar.update)
            bar.close()
            report["metrics"] = {name: {"base": base_m[name], "site": site_m[name]} for name in models}
            decision = gate(report["metrics"]["current"], report["metrics"]["candidate"], cfg.base_tolerance,
                            cfg.base_class_drop)
            report["gate"].update(base_ok=decision.base_ok, site_ok=decision.site_ok, classes_ok=decision.classes_ok)
            if not decision.promote:
                return finish("rejected", decision.reason)
            if dry_run:
                return finish("not_promoted", decision.reason + " (dry run: not promoted)")
            try:
                promote_with_state(registry, cand_path, cand_pt if cand_pt.is_file() else None, version,
                                   metrics={"base": base_m["candidate"], "site": site_m["candidate"],
                                            "previous": current.version, "report": str(report_path)},
                                   note=f"site refresh {stamp}")
            except (RegistryError, OSError) as exc:
                return finish("rejected", f"promotion failed: {exc}", "error")
            report["promoted_version"] = version
            return finish("promoted", decision.reason)
        finally:
            shutil.rmtree(work, ignore_errors=True)


__all__ = ["SiteFrame", "TrainerError", "GateDecision", "collect_site_frames", "split_site", "synthesise", "gate",
           "evaluate_models", "refresh", "promote_with_state", "lower_priority"]
