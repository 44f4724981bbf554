"""Frame -> model input views. NumPy/OpenCV only (no torch): shared by dataset
building, training, evaluation and the daemon so train and serve never skew.

A plain resize of a 1080p frame to ~112 px averages gaussian and impulse noise
away and hides blur. ``make_views`` therefore returns V = 1 + tiles views of
S x S pixels (BGR, normalised float32):

* view 0: the whole frame, downscaled (aspect ratio not kept) - brightness,
  colour, structure, broken-decode patterns;
* views 1..: native-resolution S x S crops (no resampling), chosen
  deterministically from a coarse grid of candidate positions by the texture
  of the already-reduced frame: the most textured candidate (blur evidence),
  then the least textured (noise / impulse evidence), then the median.

``Geometry(size, tiles=0)`` is the plain-resize baseline (one view).

Cost: the downscale never runs a general-ratio INTER_AREA on a full 1080p frame;
it first halves the frame with a 2x2 box (:func:`streamwatch.checks.classical.halve`,
OpenCV's fast path; ``cv2.pyrDown`` until version 2 of the views cost 3x more) until
it is less than 4x the view size, then uses INTER_AREA on the small image. See ``docs/results.md`` for the
measured ms/frame and the accuracy comparison against a plain resize.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from streamwatch.checks.classical import halve, neutralise_decoder_tint
from streamwatch.model.borders import active_picture

#: Bumped whenever :func:`make_views_u8` computes anything differently (keys training caches).
VIEWS_VERSION = 2

#: Normalisation applied to uint8 BGR values: (x / 255 - MEAN) / STD.
MEAN = 0.5
STD = 0.25


@dataclass(frozen=True)
class Geometry:
    """Input geometry of a model: view size S and the number of native tiles."""

    size: int = 112
    tiles: int = 2
    channel_order: str = "BGR"

    @property
    def views(self) -> int:
        return 1 + self.tiles

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Geometry":
        d = json.loads(text)
        g = cls(size=int(d["size"]), tiles=int(d["tiles"]), channel_order=str(d.get("channel_order", "BGR")))
        if g.size < 16 or g.tiles < 0 or g.channel_order != "BGR":
            raise ValueError(f"unsupported geometry {d!r}")
        return g


DEFAULT_GEOMETRY = Geometry()


def runtime_frame(frame: np.ndarray) -> np.ndarray:
    """What the classifier looks at in a decoded frame: its active picture (black letterbox bars
    and clock strips cut away, :func:`~streamwatch.model.borders.active_picture`) after
    :func:`~streamwatch.checks.classical.neutralise_decoder_tint` (a decoded grey video is grey).
    Views and fusion measurements are both taken from it, at serving and at training time."""
    return active_picture(neutralise_decoder_tint(frame))


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected an HxW or HxWx3 image, got shape {frame.shape}")


def _reduce(frame: np.ndarray, size: int) -> np.ndarray:
    """Halve (2x2 box) while both sides stay >= 4*size: a cheap low-pass before the
    final INTER_AREA resize."""
    small = frame
    while small.shape[0] >= 4 * size and small.shape[1] >= 4 * size:
        small = halve(small)
    return small


def _tile_positions(h: int, w: int, s: int, small: np.ndarray, tiles: int) -> list[tuple[int, int]]:
    """Top-left corners of ``tiles`` native S x S crops, chosen by texture."""
    if tiles <= 0:
        return []
    nx = 4 if w >= 2 * s else 1
    ny = 3 if h >= 2 * s else 1
    xs = np.linspace(0, w - s, nx).round().astype(int) if w > s else np.zeros(nx, int)
    ys = np.linspace(0, h - s, ny).round().astype(int) if h > s else np.zeros(ny, int)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3))
    sh, sw = gray.shape
    fy, fx = sh / h, sw / w
    cands: list[tuple[float, int, int]] = []
    for y in ys:
        for x in xs:
            y0, x0 = int(y * fy), int(x * fx)
            y1, x1 = max(y0 + 1, int((y + s) * fy)), max(x0 + 1, int((x + s) * fx))
            cands.append((float(lap[y0:y1, x0:x1].mean()), int(y), int(x)))
    order = sorted(range(len(cands)), key=lambda i: (-cands[i][0], i))
    picks: list[int] = []
    # most textured, least textured, median, then the rest by texture
    for i in (order[0], order[-1], order[len(order) // 2], *order):
        if i not in picks:
            picks.append(i)
        if len(picks) == tiles:
            break
    while len(picks) < tiles:  # tiny frames: repeat
        picks.append(picks[-1])
    return [(cands[i][1], cands[i][2]) for i in picks]


def _views_and_boxes(frame_bgr: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    frame = _as_bgr(np.asarray(frame_bgr))
    if frame.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {frame.dtype}")
    s = geometry.size
    h, w = frame.shape[:2]
    k = 1.0
    if h < s or w < s:  # tiny frames (e.g. QCIF): upscale so a tile fits
        k = s / min(h, w)
        frame = cv2.resize(frame, (max(s, round(w * k)), max(s, round(h * k))), interpolation=cv2.INTER_LINEAR)
        h, w = frame.shape[:2]
    small = _reduce(frame, s)
    out = np.empty((geometry.views, s, s, 3), np.uint8)
    out[0] = cv2.resize(small, (s, s), interpolation=cv2.INTER_AREA)
    boxes = []
    for j, (y, x) in enumerate(_tile_positions(h, w, s, small, geometry.tiles), start=1):
        out[j] = frame[y : y + s, x : x + s]
        boxes.append((x / k, y / k, s / k))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), boxes


def make_views_u8(frame_bgr: np.ndarray, geometry: Geometry = DEFAULT_GEOMETRY) -> np.ndarray:
    """As :func:`make_views` but uint8 (V, 3, S, S) before normalisation."""
    return _views_and_boxes(frame_bgr, geometry)[0]


def tile_boxes(frame_bgr: np.ndarray, geometry: Geometry = DEFAULT_GEOMETRY) -> list[tuple[float, float, float]]:
    """(x, y, side) of each tile view in the frame's own pixel coordinates."""
    return _views_and_boxes(frame_bgr, geometry)[1]


def normalize(views_u8: np.ndarray) -> np.ndarray:
    """uint8 views -> float32 model input."""
    return (views_u8.astype(np.float32) * (1.0 / (255.0 * STD))) - (MEAN / STD)


def make_views(frame_bgr: np.ndarray, geometry: Geometry = DEFAULT_GEOMETRY) -> np.ndarray:
    """BGR uint8 frame of any size -> float32 (V, 3, S, S) normalised views."""
    return normalize(make_views_u8(frame_bgr, geometry))
