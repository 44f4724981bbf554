"""Privacy masks: fill a camera's configured mask regions before the classifier sees the frame.

Many cameras black out part of their view (a neighbour's window, a keypad). The classifier was
trained on pictures without such rectangles and may call a large solid one a broken decode
(``frozen``) or a colour cast: on the 300 normal test pictures with one black mask of 4-15 % of
the picture, 80.7 % are still called normal against 85.7 % without it (session 19's model;
session 16's: 52.7 against 79.0), and the faults under a black mask lose up to 30 points
(``bench/privacy_masks.py``). The operator knows where the masks are; the daemon fills those
regions from their surroundings (OpenCV Telea inpainting on a reduced copy of each region and
its margin) so the picture looks like a scene again. Only the classifier's copy is filled: the
reservoir and the temporal checks see the frame as decoded.

An inpainted fill is smooth: on a noisy camera it becomes the flattest, cleanest part of the
picture, which is exactly where a noise measurement looks (the fusion's noise of the flattest
blocks): with a smooth fill 12 % of the gaussian_noise test pictures were called something else
(session 20). So each fill gets noise of the level measured in its own margin (a robust
Immerkaer estimate per channel): a clean camera's fill stays clean, a noisy camera's fill is as
noisy as the rest of its picture.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from streamwatch.model.fusion import noise_residual

#: Inpainting runs on a reduced copy whose hole has about this many pixels, whatever the frame's
#: size: Telea's cost grows with the area to fill (a 9 % region of a 1080p frame: 12 ms at a
#: quarter of the resolution, ~2 ms at this size), and the fill only has to look like smooth
#: scene, not carry detail.
HOLE_PIXELS = 2500
#: Never reduce less than this (small regions of small frames).
MIN_SCALE = 4
#: Context around a region (pixels of the reduced copy) that the inpainting reads from.
MARGIN = 6
#: Width (full-resolution pixels) of the ring around a region whose noise the fill copies; the
#: ring starts :data:`NOISE_GAP` pixels out so the mask's own edge is not measured as noise.
NOISE_RING = 24
NOISE_GAP = 3
#: median |Immerkaer residual| of Gaussian noise of sigma 1 (the kernel's norm is 6; the median of
#: a half-normal is 0.6745 sigma) - a median, because edges and texture inflate a mean.
_MEDIAN_PER_SIGMA = 6.0 * 0.6745
_NOISE_TILE_SIDE = 256


class Region(Protocol):
    """A rectangle in fractions of the frame (``streamwatch.config.MaskRegion``)."""

    x: float
    y: float
    width: float
    height: float


def region_pixels(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a fractional region in a width x height frame, at least 1 px."""
    x0 = min(width - 1, max(0, int(round(region.x * width))))
    y0 = min(height - 1, max(0, int(round(region.y * height))))
    x1 = min(width, max(x0 + 1, int(round((region.x + region.width) * width))))
    y1 = min(height, max(y0 + 1, int(round((region.y + region.height) * height))))
    return x0, y0, x1, y1


def ring_noise_sigma(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Noise sigma per channel (grey levels) in a ring around ``box`` = (x0, y0, x1, y1), from
    the median absolute Immerkaer residual of the four strips around it (not the box itself, which
    may be large); zeros when there is no ring (a region filling the frame)."""
    h, w = frame.shape[:2]
    channels = frame.shape[2] if frame.ndim == 3 else 1
    x0, y0, x1, y1 = box
    inner, outer = NOISE_GAP, NOISE_GAP + NOISE_RING
    ox0, oy0, ox1, oy1 = max(0, x0 - outer), max(0, y0 - outer), min(w, x1 + outer), min(h, y1 + outer)
    strips = (frame[oy0 : max(oy0, y0 - inner), ox0:ox1], frame[min(oy1, y1 + inner) : oy1, ox0:ox1],
              frame[oy0:oy1, ox0 : max(ox0, x0 - inner)], frame[oy0:oy1, min(ox1, x1 + inner) : ox1])
    # every second row and column: a median of a quarter of the ring is as good and 4x cheaper
    residuals = [np.dstack([noise_residual(plane)[::2, ::2] for plane in cv2.split(strip)]).reshape(-1, channels)
                 for strip in strips if min(strip.shape[:2]) >= 3]
    if sum(len(r) for r in residuals) < 16:
        return np.zeros(channels, np.float32)
    return (np.median(np.concatenate(residuals), axis=0) / _MEDIAN_PER_SIGMA).astype(np.float32)


def _noise(height: int, width: int, sigma: np.ndarray) -> np.ndarray:
    """float32 Gaussian noise of the given sigma per channel, height x width (x channels when
    more than one), tiled from a fixed pattern in OpenCV (drawing fresh normals for a large
    region in NumPy costs more than the inpainting)."""
    pattern = cv2.repeat(_noise_tile(), -(-height // _NOISE_TILE_SIDE), -(-width // _NOISE_TILE_SIDE))[:height, :width]
    # OpenCV returns a one-channel pattern as height x width, the shape of a grey frame's region
    return cv2.multiply(np.ascontiguousarray(pattern[:, :, : len(sigma)]), tuple(float(x) for x in sigma) + (0.0,))


@functools.cache
def _noise_tile() -> np.ndarray:
    """The fixed standard-normal pattern of :func:`_noise`, made once (read-only: fills are repeatable)."""
    tile = np.random.default_rng(0).standard_normal((_NOISE_TILE_SIDE, _NOISE_TILE_SIDE, 3), np.float32)
    tile.flags.writeable = False
    return tile


def fill_regions(frame: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy of ``frame`` with each region filled from its surroundings (``frame`` itself
    when there are no regions), carrying the noise level of its margin
    (:func:`ring_noise_sigma`). Works on 8-bit grey or BGR frames of any size; the same frame
    and regions give the same fill."""
    if not regions:
        return frame
    out = frame.copy()
    h, w = frame.shape[:2]
    for region in regions:
        x0, y0, x1, y1 = region_pixels(region, w, h)
        scale = max(MIN_SCALE, int(np.ceil(np.sqrt((x1 - x0) * (y1 - y0) / HOLE_PIXELS))))
        m = MARGIN * scale
        rx0, ry0, rx1, ry1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
        roi = out[ry0:ry1, rx0:rx1]
        hole = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
        mask = np.zeros(roi.shape[:2], np.uint8)
        mask[hole] = 255
        sw, sh = max(1, (rx1 - rx0) // scale), max(1, (ry1 - ry0) // scale)
        small = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
        # a pixel of the reduced copy belongs to the hole if any of its source pixels did: the mask's
        # own colour must not bleed into the fill
        small_mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA)
        small_mask = np.where(small_mask > 0, 255, 0).astype(np.uint8)
        if small_mask.all():  # the region covers the whole frame: nothing to fill from
            continue
        filled = cv2.resize(cv2.inpaint(small, small_mask, 3, cv2.INPAINT_TELEA), (rx1 - rx0, ry1 - ry0),
                            interpolation=cv2.INTER_LINEAR)
        sigma = ring_noise_sigma(frame, (x0, y0, x1, y1))
        if 0.5 <= sigma.max() and len(sigma) <= 3:  # below 0.5 the fill's own rounding is the noise
            roi[hole] = cv2.add(filled[hole], _noise(y1 - y0, x1 - x0, sigma), dtype=cv2.CV_8U)
        else:
            roi[hole] = filled[hole]
    return out
