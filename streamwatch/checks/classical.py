"""Classical image statistics: the fallback detectors used when no classifier runs.

They look at a 320 px wide thumbnail (and a 640 px grey for sharpness), cost
well under a millisecond together, and catch the gross cases of three faults.
The classifier outvotes them: with a model loaded the daemon uses the model's
probabilities for these faults and ignores these scores (see daemon docs).
Thresholds were chosen on the project's degraded training frames; their
measured accuracy is in docs/results.md ("classical statistics" row).

Each function returns a confidence in 0..1 (>= 0.5 means "fault present").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np


def halve(image: np.ndarray) -> np.ndarray:
    """Half the size by a 2x2 box average (an odd last row or column is dropped): INTER_AREA
    at exactly half is OpenCV's fast path, 0.5 ms for a 1080p BGR frame (pyrDown: 1.6 ms)."""
    h, w = image.shape[:2]
    return cv2.resize(image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


#: Largest uniform chroma offset (grey levels, B-G and R-G) that :func:`neutralise_decoder_tint`
#: treats as a decoder's rounding rather than colour.
DECODER_TINT_LEVELS = 4


def neutralise_decoder_tint(frame: np.ndarray) -> np.ndarray:
    """A picture whose chroma is one uniform offset of a few grey levels -> exactly grey.

    A colourless picture that went through a video encoder comes back from the decoder with a
    constant tint: the encoder's chroma planes round to 127 instead of 128 and the limited-range
    YUV -> BGR conversion turns that into B-G = -3, R-G = -2 on every pixel (measured on libx264
    clips decoded by OpenCV). The classifier learned ``monochrome`` from JPEG stills, whose grey
    decodes exactly grey, and calls such a tinted grey ``normal``. A real colour picture never has
    B-G and R-G within a few levels of one constant at every sampled pixel (every 8th row and
    column), so the rule leaves colour frames untouched (returned as is, no copy).
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        return frame
    sample = frame[::8, ::8].astype(np.int16)
    for a, b in ((0, 1), (2, 1)):
        diff = (sample[:, :, a] - sample[:, :, b]).ravel()
        if diff.size == 0:
            return frame
        # The whole range, not percentiles: a white wall with a small coloured object keeps its colour.
        lo, hi = int(diff.min()), int(diff.max())
        if hi - lo > DECODER_TINT_LEVELS or max(abs(lo), abs(hi)) > DECODER_TINT_LEVELS:
            return frame
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """Shrink to ``width`` pixels (aspect kept; never enlarges).

    :func:`halve` while the image is at least twice too wide, then one bilinear step of
    less than 2x. INTER_AREA straight to a non-power-of-two ratio (1920 -> 640) takes
    OpenCV's general path, 5x slower (2.8 ms), which cost more than any other measurement."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    while w >= 2 * width and h >= 2:
        image = halve(image)
        h, w = image.shape[:2]
    if w == width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    """Linear 0..1 ramp between two points (either direction)."""
    t = (value - zero_at) / (one_at - zero_at)
    return float(min(1.0, max(0.0, t)))


@dataclass(frozen=True)
class ImageStats:
    mean_luma: float  # 0..255
    clipped_fraction: float  # share of pixels with luma >= 250
    chroma: float  # mean |Cr-128| + |Cb-128| over pixels that are not near-black
    sharpness: float  # variance of the Laplacian on a 640 px grey


def image_stats(image: np.ndarray) -> ImageStats:
    """The statistics the classical checks use, from a BGR uint8 frame of any size."""
    return measure(image).stats


class Measured(NamedTuple):
    """:class:`ImageStats` and the reduced copies they were measured on (reused by the
    fusion's measurements so a frame is resized and converted once)."""

    stats: ImageStats
    medium: np.ndarray  # BGR, at most 640 px wide
    grey: np.ndarray  # grey of ``medium`` (sharpness was measured on it)
    small: np.ndarray  # BGR, at most 320 px wide, from ``medium``
    ycc: np.ndarray  # YCrCb of ``small``


def measure(image: np.ndarray) -> Measured:
    """:func:`image_stats` plus the reduced copies it measured on."""
    medium = resize_to_width(image, 640)
    small = resize_to_width(medium, 320)  # from the 640 px copy: one fast halving
    ycc = cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb)
    luma = ycc[:, :, 0]
    # Chroma of near-black pixels is pure compression noise; leave them out.
    lit = luma > 24
    cr = ycc[:, :, 1].astype(np.int16) - 128
    cb = ycc[:, :, 2].astype(np.int16) - 128
    chroma_map = np.abs(cr) + np.abs(cb)
    chroma = float(chroma_map[lit].mean()) if lit.any() else 0.0
    grey = cv2.cvtColor(medium, cv2.COLOR_BGR2GRAY)
    # int16 Laplacian (|values| <= 1020) and OpenCV's moments: the same variance as a float
    # image's .var() at a third of the cost.
    sharpness = float(cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))[1][0, 0] ** 2)
    stats = ImageStats(
        mean_luma=float(luma.mean()),
        clipped_fraction=float((luma >= 250).mean()),
        chroma=chroma,
        sharpness=sharpness,
    )
    return Measured(stats, medium, grey, small, ycc)


def overexposed_score(stats: ImageStats) -> float:
    """Large clipped areas on a bright picture."""
    return min(_ramp(stats.clipped_fraction, 0.10, 0.30), _ramp(stats.mean_luma, 140.0, 175.0))


def monochrome_score(stats: ImageStats) -> float:
    """Chroma essentially zero (a colour camera stuck in black-and-white)."""
    return _ramp(stats.chroma, 3.0, 1.0)


def blurred_score(stats: ImageStats) -> float:
    """Little high-frequency energy. Scene-dependent: a bare wall looks 'blurred' too."""
    return _ramp(stats.sharpness, 60.0, 20.0)


CLASSICAL_CHECKS = {
    "overexposed": overexposed_score,
    "monochrome": monochrome_score,
    "blurred": blurred_score,
}


def classical_scores(image: np.ndarray) -> dict[str, float]:
    """Confidence per fault for the faults the classical statistics cover."""
    stats = image_stats(neutralise_decoder_tint(image))
    return {fault: check(stats) for fault, check in CLASSICAL_CHECKS.items()}
