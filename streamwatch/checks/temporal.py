"""Temporal checks that need no neural network: a picture that stopped changing.

How a frozen feed is told apart from a static but *live* scene
--------------------------------------------------------------
Measured on H.264 clips (see tests/test_checks_temporal.py and docs/detection.md):

* A frozen feed (a stalled encoder or a camera re-sending one picture) decodes to
  bit-identical frames within a GOP: consecutive decoded frames differ by ~0.000-0.005
  grey levels on average. Only at each keyframe the re-encoded picture jumps a little
  (mean ~0.7, largest 16x16 cell ~1.5 grey levels), and then stays identical again.
* A live static scene with sensor noise differs between consecutive frames
  (0.006-0.4 mean, depending on noise and compression), every frame.
* A ticking clock overlay, a blinking LED or a person changes a few cells strongly
  (largest cell difference >= 3 grey levels between samples 1 s apart).

So each sample carries two measurements: ``motion``, the mean absolute grey
difference between the two newest consecutive decoded frames (computed by the
reader on a 320 px wide nearest-neighbour thumbnail, so sensor noise is *not*
averaged away), and the largest per-cell difference to the previous sample.
A sample is *still* when ``motion <= noise_floor``; the picture *changed* when a
cell moved by ``change_threshold`` or more. The feed is frozen once no change was
seen for ``frozen_after`` seconds while new frames kept arriving and at least
``STILL_SHARE`` of the samples in that period were still. Keyframe jumps of a
held picture neither reset the timer nor count as still.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB_WIDTH = 320
CELL = 16
#: Share of samples since the last change that must be still for a frozen verdict.
STILL_SHARE = 0.8


def grey_thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """Nearest-neighbour grey thumbnail (float32): keeps per-pixel noise, costs ~0.1 ms at 1080p."""
    h, w = image.shape[:2]
    height = max(CELL, round(h * width / w))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (inf if their shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(cv2.absdiff(a, b).mean())


def max_cell_difference(a: np.ndarray, b: np.ndarray, cell: int = CELL) -> float:
    """Largest per-cell mean absolute difference between two thumbnails (inf if shapes differ)."""
    if a.shape != b.shape:
        return float("inf")  # resolution changed: definitely not a frozen picture
    diff = cv2.absdiff(a, b)
    h, w = diff.shape
    h, w = max(cell, h - h % cell), max(cell, w - w % cell)
    diff = diff[:h, :w]
    cells = diff.reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3))
    return float(cells.max())


@dataclass(frozen=True)
class FrozenVerdict:
    frozen: bool
    still_for: float  # seconds since the picture last changed
    difference: float  # largest cell difference to the previous sample
    still_share: float  # share of still samples since the last change


class FrozenDetector:
    """Per-camera detector fed with every sample of that camera, in time order."""

    def __init__(self, frozen_after: float, noise_floor: float, change_threshold: float = 2.5):
        self.frozen_after = frozen_after
        self.noise_floor = noise_floor
        self.change_threshold = change_threshold
        self._previous: np.ndarray | None = None
        self._last_change: float | None = None
        self._samples = 0
        self._still = 0

    def reset(self) -> None:
        """Forget history (after a reconnect the picture may legitimately repeat)."""
        self._previous = None
        self._last_change = None

    def _mark_change(self, now: float) -> None:
        self._last_change = now
        self._samples = self._still = 0

    def update(self, image: np.ndarray, now: float, motion: float | None = None) -> FrozenVerdict:
        """Feed one sample; ``motion`` is the reader's consecutive-frame difference, if known."""
        thumb = grey_thumbnail(image)
        previous, self._previous = self._previous, thumb
        if previous is None or self._last_change is None:
            self._mark_change(now)
            return FrozenVerdict(False, 0.0, float("inf"), 0.0)
        difference = max_cell_difference(thumb, previous)
        if difference >= self.change_threshold:
            self._mark_change(now)
            return FrozenVerdict(False, 0.0, difference, 0.0)
        if motion is None:
            # No consecutive-frame measure (e.g. keyframe-only decoding): fall back to
            # the sample pair, where only within-GOP pairs can prove stillness.
            motion = mean_difference(thumb, previous)
        self._samples += 1
        self._still += motion <= self.noise_floor
        share = self._still / self._samples
        still_for = now - self._last_change
        return FrozenVerdict(still_for >= self.frozen_after and share >= STILL_SHARE, still_for, difference, share)


def motion_thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """Every n-th pixel of every n-th row of one channel (green of BGR), ~``width`` columns.

    The reader's per-frame measure, so it must be cheap: no resize, no colour conversion,
    only a strided copy of ~1/36 of a 1080p frame's green bytes (green carries ~60 % of
    luma). Nearest-neighbour like ``grey_thumbnail`` (sensor noise is kept, not averaged).
    """
    step = max(1, image.shape[1] // width)
    plane = image[::step, ::step, 1] if image.ndim == 3 else image[::step, ::step]
    return np.ascontiguousarray(plane)


def motion_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 thumbnails (inf if their shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


class MotionMeter:
    """Mean grey difference between consecutive frames; owned by a reader thread.

    Measured on ``motion_thumbnail`` (strided green channel): ~0.03 ms per 1080p frame
    against ~0.15 ms for ``grey_thumbnail`` + ``mean_difference`` (resize + cvtColor +
    float), see docs/performance.md. A held picture still measures exactly 0 and sensor
    noise stays visible, so ``frozen_noise_floor`` keeps its meaning.
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def update(self, image: np.ndarray) -> float | None:
        thumb = motion_thumbnail(image)
        previous, self._previous = self._previous, thumb
        return None if previous is None else motion_difference(thumb, previous)
