"""Operator labels for the site trainer: ``streamwatch label CAMERA --as CLASS``.

Labelled frames go to ``<reservoir>/<camera>/labels/<class>/`` and are used by
the next ``streamwatch trainer`` run with the label as ground truth (for example
``--as normal`` for a camera that is black and white at night by design, or
``--as blurred`` for a fault the model missed). The daemon never rotates them out.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import cv2
import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.config import Config
from streamwatch.reservoir import _stamp, encode_jpeg


class LabelError(Exception):
    """Message is for the operator."""


def labels_dir(config: Config, camera_id: str, label: str) -> Path:
    if label not in CLASS_NAMES:
        raise LabelError(f"unknown class {label!r}; use one of: {', '.join(CLASS_NAMES)}")
    if camera_id not in {c.id for c in config.cameras}:
        raise LabelError(f"camera {camera_id!r} is not in the config")
    assert config.reservoir.dir is not None
    return config.reservoir.dir / camera_id / "labels" / label


def save_labelled(folder: Path, image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_stamp()}.jpg"
    path.write_bytes(encode_jpeg(image, 1280, 92))
    return path


def capture_frames(url: str, count: int, interval: float, timeout: float = 20.0) -> list[np.ndarray]:
    """Grab ``count`` frames from the camera, ``interval`` seconds of stream time apart."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    try:
        if not cap.isOpened():
            raise LabelError("cannot open the camera stream")
        deadline = time.monotonic() + timeout + count * interval
        next_at = None
        failures = 0
        while len(frames) < count and time.monotonic() < deadline and failures < 50:
            ok, image = cap.read()
            if not ok or image is None:
                failures += 1
                continue
            failures = 0
            # Stream time, not wall time: a file decodes faster than real time.
            position = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if next_at is None or position >= next_at:
                frames.append(image)
                next_at = position + interval
    finally:
        cap.release()
    if not frames:
        raise LabelError("the camera delivered no frames")
    return frames


def label_camera(config: Config, camera_id: str, label: str, count: int = 5, interval: float = 2.0) -> list[Path]:
    folder = labels_dir(config, camera_id, label)
    camera = next(c for c in config.cameras if c.id == camera_id)
    return [save_labelled(folder, image) for image in capture_frames(camera.url, count, interval)]


def label_from_file(config: Config, camera_id: str, list_file: Path, default_label: str | None) -> list[Path]:
    """A list of images, one per line: ``path`` or ``path,class`` (CSV; relative to the list)."""
    saved = []
    with open(list_file, newline="", encoding="utf-8") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#"):
                continue
            label = row[1].strip() if len(row) > 1 and row[1].strip() else default_label
            if label is None:
                raise LabelError(f"{list_file}:{row_number}: no class given (add ',CLASS' or use --as)")
            image_path = Path(row[0].strip())
            if not image_path.is_absolute():
                image_path = list_file.parent / image_path
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image is None:
                raise LabelError(f"{list_file}:{row_number}: cannot read image {image_path}")
            saved.append(save_labelled(labels_dir(config, camera_id, label), image))
    return saved
