"""The active picture of a frame: black bars at its edges cut away before classification.

CCTV pictures often carry black bars that are not part of the scene: a letterboxed or
pillarboxed stream (a 16:9 camera in a 4:3 channel, an NVR re-stream), a black strip under
the picture for the on-screen clock. The classifier learned ``frozen`` from broken decodes
that fill the lower part of a frame with flat blocks, and a flat black bar looks like one:
measured on 100 normal test pictures of ``ds_v3`` (session 10, shipped model), 96-97 % of
the letterboxed ones and 95 % of those with an 8 % black strip at the bottom were called
``frozen`` (plain: 4 %). The issue's frozen patterns are smeared rows, *grey or green*
macroblocks and torn frames - never black bars - so cutting black edge bars away loses no
fault evidence as long as a dark picture is not mistaken for a bar (the rule below).

A row (column) is black like a bar when at least :data:`BAR_BLACK_SHARE` of its pixels are
at most :data:`BAR_LEVEL` and at most :data:`BAR_MAX_MID` are neither black nor bright: a dark
scene (tree trunks, a night sky with lights, the smeared rows of a broken decode of them) is
not. Bars are the runs of such rows from each edge, bridging the rows through the white digits
of an OSD clock written in a strip (gaps up to :data:`MAX_TEXT_GAP` of the side). Nothing is
cut when the bars would leave less than :data:`MIN_KEPT` of either side (a black screen, a
dark scene: those are judged as they are), and a bar thinner than :data:`MIN_BAR` of its side
is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Grey level at or below which a pixel counts as black (limited-range black decodes to 0-16).
BAR_LEVEL = 16
#: Share of a bar row's pixels that must be black.
BAR_BLACK_SHARE = 0.9
#: Largest share of a bar row's pixels that may be neither black nor bright (levels
#: BAR_LEVEL < v < TEXT_LEVEL). Dark scene rows - tree trunks, the smeared rows of a broken
#: decode of a dark forest (measured: 83-90 % black, 10-17 % mid-grey) - are not bars.
BAR_MAX_MID = 0.05
#: Grey level from which a pixel in a bar counts as OSD text.
TEXT_LEVEL = 160
#: Rows through OSD text written in a strip are no bar rows (10-45 % white, JPEG ringing
#: around the digits); a run of bar rows bridges such gaps up to this share of the side.
MAX_TEXT_GAP = 0.06
#: Bars thinner than this share of the side are left alone (a dark first row is no bar).
MIN_BAR = 0.01
#: Share of each side that must remain after cutting, else nothing is cut.
MIN_KEPT = 0.5
#: Rows and columns are tested on every STRIDE-th row and column, every STRIDE-th pixel along
#: them (bars are uniform), so bounds are found to STRIDE pixels.
STRIDE = 4


def _bar_flags(grey: np.ndarray) -> np.ndarray:
    """Per row of ``grey`` (uint8): whether it is black like a bar."""
    n = grey.shape[1]
    black = np.count_nonzero(grey <= BAR_LEVEL, axis=1)
    text = np.count_nonzero(grey >= TEXT_LEVEL, axis=1)
    return (black >= BAR_BLACK_SHARE * n) & (n - black - text <= BAR_MAX_MID * n)


def _edge_run(flags: np.ndarray, max_gap: int) -> int:
    """Rows from the start of ``flags`` up to its last True reachable over gaps of at most
    ``max_gap`` False rows (0 if the first row is no bar)."""
    end = 0
    for i in np.flatnonzero(flags):
        if i - end > max_gap:
            break
        end = int(i) + 1
    return end


def active_area(frame: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) bounds of the picture inside black edge bars (whole frame if
    none), to :data:`STRIDE` pixels (every 16th pixel of the frame is read)."""
    h, w = frame.shape[:2]
    probe = frame[::STRIDE, ::STRIDE]
    if probe.ndim == 3 and probe.shape[2] >= 3:  # BGR or BGRA
        grey = cv2.cvtColor(np.ascontiguousarray(probe[:, :, :3]), cv2.COLOR_BGR2GRAY)
    else:  # grey, as H x W or H x W x 1 (make_views accepts both)
        grey = probe.reshape(probe.shape[:2])
    rows, cols = _bar_flags(grey), _bar_flags(grey.T)
    row_gap, col_gap = int(MAX_TEXT_GAP * len(rows)), int(MAX_TEXT_GAP * len(cols))
    top, bottom = _edge_run(rows, row_gap) * STRIDE, _edge_run(rows[::-1], row_gap) * STRIDE
    left, right = _edge_run(cols, col_gap) * STRIDE, _edge_run(cols[::-1], col_gap) * STRIDE
    top, bottom = (top if top >= MIN_BAR * h else 0), (bottom if bottom >= MIN_BAR * h else 0)
    left, right = (left if left >= MIN_BAR * w else 0), (right if right >= MIN_BAR * w else 0)
    # Rows are probed every STRIDE rows: up to STRIDE - 1 bar rows (and the JPEG ringing row)
    # can remain beside the picture, and a thin black line under it reads as a torn frame's
    # seam. Cut STRIDE rows further into the picture on every side that has a bar.
    top, bottom, left, right = (side + STRIDE if side else 0 for side in (top, bottom, left, right))
    if h - top - bottom < MIN_KEPT * h:
        top = bottom = 0
    if w - left - right < MIN_KEPT * w:
        left = right = 0
    return top, h - bottom, left, w - right


def active_picture(frame: np.ndarray) -> np.ndarray:
    """``frame`` without its black edge bars (a view, no copy; the frame itself if it has none)."""
    top, bottom, left, right = active_area(frame)
    if (top, left) == (0, 0) and (bottom, right) == frame.shape[:2]:
        return frame
    return frame[top:bottom, left:right]
