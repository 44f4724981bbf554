"""Privacy masks: fill a camera's configured mask regions before the classifier sees the frame.

Many cameras black out part of their view (a neighbour's window, a keypad). The classifier was
trained on pictures without such rectangles and calls a large solid one a broken decode
(``frozen``) or a colour cast: on the 300 normal test pictures with one black mask of 4-15 % of
the picture, 52.7 % are still called normal against 79.0 % without it
(``bench/privacy_masks.py``). The operator knows where the masks are; the daemon fills those
regions from their surroundings (OpenCV Telea inpainting on a reduced copy of each region and
its margin) so the picture looks like a scene again. Only the classifier's copy is filled: the
reservoir and the temporal checks see the frame as decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

#: Inpainting runs on a reduced copy whose hole has about this many pixels, whatever the frame's
#: size: Telea's cost grows with the area to fill (a 9 % region of a 1080p frame: 12 ms at a
#: quarter of the resolution, ~2 ms at this size), and the fill only has to look like smooth
#: scene, not carry detail.
HOLE_PIXELS = 2500
#: Never reduce less than this (small regions of small frames).
MIN_SCALE = 4
#: Context around a region (pixels of the reduced copy) that the inpainting reads from.
MARGIN = 6


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


def fill_regions(frame: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy of ``frame`` with each region filled from its surroundings (``frame`` itself
    when there are no regions). Works on 8-bit grey or BGR frames of any size."""
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
        roi[hole] = filled[hole]
    return out
