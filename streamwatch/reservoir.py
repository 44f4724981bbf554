"""A bounded, rotating store of sampled frames per camera, for the site trainer.

Per camera, under ``<reservoir>/<camera>/``:

* ``normal/NNNN.jpg``: a uniform random sample (reservoir sampling, Algorithm R)
  over *all* candidate frames the camera ever produced, so nights, days and
  weather are represented in proportion to time, not just the last hours.
  A candidate is a frame the classifier called ``normal`` with at least
  ``min_confidence`` while no fault was open; at most one per ``min_interval``.
* ``faults/<fault>/<time>.jpg``: frames taken while a fault is raised, for review
  (newest ``fault_frames`` kept).
* ``labels/<class>/<time>.jpg``: frames an operator labelled (``streamwatch label``);
  never rotated out by the daemon.
* ``index.json``: slot metadata and the candidate counter (so sampling stays
  uniform across restarts).

Disk use never exceeds ``max_mb``: each camera gets an equal share and a write
that would exceed it first evicts the camera's oldest fault frame, then its
largest normal slot. Encoding and writing happen on the reservoir's own thread;
``offer`` only decides and enqueues, so the analysis path never waits on disk.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog

log = structlog.get_logger(__name__)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def encode_jpeg(image: np.ndarray, max_width: int, quality: int) -> bytes:
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _CameraStore:
    """Files of one camera; used only from the reservoir's writer thread."""

    def __init__(self, root: Path, slots: int, fault_frames: int, rng: random.Random):
        self.root = root
        self.slots = slots
        self.fault_frames = fault_frames
        self.rng = rng
        self.index_path = root / "index.json"
        self.index: dict[str, Any] = {"seen": 0, "slots": {}}
        if self.index_path.exists():
            try:
                self.index = json.loads(self.index_path.read_text())
            except (OSError, ValueError):
                log.warning("reservoir_index_unreadable", path=str(self.index_path))

    def used_bytes(self) -> int:
        return _dir_bytes(self.root) if self.root.exists() else 0

    def _save_index(self) -> None:
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.index))
        os.replace(tmp, self.index_path)

    def _evict_one(self) -> bool:
        faults = sorted((self.root / "faults").glob("*/*.jpg")) if (self.root / "faults").exists() else []
        if faults:
            faults[0].unlink()
            return True
        normals = sorted((self.root / "normal").glob("*.jpg"), key=lambda p: p.stat().st_size, reverse=True)
        if normals:
            normals[0].unlink()
            self.index["slots"].pop(normals[0].stem, None)
            return True
        return False

    def _make_room(self, size: int, budget: int) -> bool:
        used = self.used_bytes()
        while used + size > budget:
            if not self._evict_one():
                return False
            used = self.used_bytes()
        return True

    def add_normal(self, data: bytes, meta: dict[str, Any], budget: int) -> None:
        """Algorithm R: the n-th candidate replaces a random slot with probability slots/n."""
        self.index["seen"] = int(self.index.get("seen", 0)) + 1
        seen = self.index["seen"]
        filled = len(self.index["slots"])
        if filled < self.slots:
            slot = next(f"{i:04d}" for i in range(self.slots) if f"{i:04d}" not in self.index["slots"])
        else:
            j = self.rng.randrange(seen)
            if j >= self.slots:
                self._save_index()
                return
            slot = f"{j:04d}"
        target = self.root / "normal" / f"{slot}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        old = target.stat().st_size if target.exists() else 0
        if not self._make_room(len(data) - old, budget):
            self._save_index()
            return
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        self.index["slots"][slot] = dict(meta, n=seen)
        self._save_index()

    def add_fault(self, fault: str, data: bytes, budget: int) -> None:
        folder = self.root / "faults" / fault
        folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(folder.glob("*.jpg"))
        for old in existing[: max(0, len(existing) - self.fault_frames + 1)]:
            old.unlink()
        if not self._make_room(len(data), budget):
            return
        (folder / f"{_stamp()}.jpg").write_bytes(data)


class Reservoir:
    """Owns one writer thread. ``offer`` is cheap and never blocks."""

    def __init__(
        self,
        root: Path,
        *,
        max_mb: float = 2000,
        max_width: int = 1280,
        frames_per_camera: int = 200,
        fault_frames: int = 50,
        min_interval: float = 60.0,
        min_confidence: float = 0.9,
        jpeg_quality: int = 90,
        seed: int | None = None,
    ):
        self.root = Path(root)
        self.max_bytes = int(max_mb * 1_000_000)
        self.frames_per_camera = frames_per_camera
        self.fault_frames = fault_frames
        self.min_interval = min_interval
        self.min_confidence = min_confidence
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self._rng = random.Random(seed)
        self._stores: dict[str, _CameraStore] = {}
        self._cameras: list[str] = []
        self._last: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="reservoir", daemon=True)
        self._failed_logged = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def set_cameras(self, camera_ids: list[str]) -> None:
        """Cameras sharing the disk budget (others' files are left for the trainer)."""
        self._queue.put(("cameras", list(camera_ids)))

    def camera_budget(self) -> int:
        return self.max_bytes // max(1, len(self._cameras))

    def offer(self, camera: str, image: np.ndarray, probabilities: np.ndarray | None,
              active_faults: list[str], now: float | None = None) -> bool:
        """Consider one analysed sample; returns True if it was queued for storage."""
        now = time.monotonic() if now is None else now
        if active_faults:
            kind = "fault:" + ",".join(sorted(active_faults))
        elif probabilities is not None and float(probabilities[0]) >= self.min_confidence:
            kind = "normal"
        else:
            return False
        key = (camera, "fault" if active_faults else "normal")
        if now - self._last.get(key, -1e18) < self.min_interval:
            return False
        self._last[key] = now
        meta = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if probabilities is not None:
            meta["normal_confidence"] = round(float(probabilities[0]), 4)
        try:
            self._queue.put_nowait((kind, camera, image, meta, sorted(active_faults)))
        except queue.Full:
            return False
        return True

    def _store(self, camera: str) -> _CameraStore:
        store = self._stores.get(camera)
        if store is None:
            store = _CameraStore(self.root / camera, self.frames_per_camera, self.fault_frames, self._rng)
            self._stores[camera] = store
        return store

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if item[0] == "cameras":
                    self._cameras = item[1]
                    for camera in self._cameras:
                        store = self._store(camera)
                        while store.used_bytes() > self.camera_budget() and store._evict_one():
                            pass
                    continue
                kind, camera, image, meta, faults = item
                data = encode_jpeg(image, self.max_width, self.jpeg_quality)
                store = self._store(camera)
                budget = self.camera_budget()
                if kind == "normal":
                    store.add_normal(data, meta, budget)
                else:
                    for fault in faults:
                        store.add_fault(fault, data, budget)
                self._failed_logged = False
            except OSError as exc:
                # Disk full or read-only: monitoring goes on without the reservoir.
                if not self._failed_logged:
                    log.error("reservoir_write_failed", root=str(self.root), error=str(exc))
                    self._failed_logged = True
            except Exception:
                log.exception("reservoir_error")
