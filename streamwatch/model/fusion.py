"""Evidence fusion: the network's probabilities plus physical image measurements.

The ECA-MobileNetV2 sees a 112 px whole view and two native 112 px tiles. Some faults are
defined by whole-frame physics that such views only sample: "chroma removed entirely"
(monochrome), a noise level (gaussian_noise sigma >= 12), a share of impulse pixels
(salt_pepper >= 1 %), one colour channel out of balance (color_cast), large clipped areas
(overexposed), missing high frequencies (blurred), and the traces a broken decode leaves
(frozen: rows smeared down, flat grey/green macroblocks, a torn frame's seam).
:func:`frame_features` measures these (exposure quantiles, chroma offsets of the greys and
highlights, Laplacian energy per octave and Crete-Roffet re-blur, block-wise Immerkaer noise
and impulse shares on four native-resolution tiles, row smear/seam/macroblock statistics;
about 2x the network's pre-processing cost, see docs/performance.md). A small classifier
(:class:`Fusion`: one hidden layer over ``[log p_model, standardised features]``) - fitted at
export on the training and validation splits (``streamwatch export --fuse-on``,
:func:`streamwatch.train.export.fit_fusion`; never on the test split) and stored in the ONNX
metadata - turns them into the final class probabilities. Without that metadata the
network's probabilities are used unchanged. ``docs/results.md`` reports the network alone
and fused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from streamwatch.checks.classical import measure

#: ONNX metadata key holding the fitted fusion (JSON, see :meth:`Fusion.to_json`).
META_FUSION = "streamwatch.fusion"

#: Bumped whenever :func:`frame_features` computes anything differently (keys training caches).
FEATURES_VERSION = 7

#: Names of :func:`frame_features`' outputs, in order.
FEATURE_NAMES = (
    # exposure
    "log_chroma", "log_sharpness", "clipped_fraction", "mean_luma",
    "luma_p1", "luma_p5", "luma_p25", "luma_p50", "luma_p75", "luma_p95",
    "clipped_240", "dark_fraction", "white_clipped",
    # colour (YCrCb on a 320 px copy)
    "log_channel_imbalance", "mean_cr", "mean_cb", "log_cast", "log_chroma_p10", "log_chroma_p50",
    "log_chroma_p90", "log_grey_cast", "log_chroma_spread", "log_r_g", "log_b_g", "log_highlight_cast",
    "p99_r_g", "p99_b_g", "p2_r_g", "p2_b_g", "log_shadow_cast", "cast_coherence",
    # sharpness (640 px grey, three octaves) and edges
    "log_laplacian_640", "octave_ratio_1", "octave_ratio_2", "log_strong_edges", "log_gradient_p99",
    "log_native_laplacian", "native_octave_ratio", "reblur_native_h", "reblur_native_v", "reblur_640_h",
    "reblur_640_v",
    # noise and impulses (a mosaic of four native-resolution tiles)
    "log_noise_sigma", "log_noise_p10", "log_noise_p50",
    "log_impulse_permille", "log_impulse_40", "log_impulse_extreme", "log_impulse_colour", "log_impulse_isolated",
    # broken decodes (320 px grey rows, 16 px blocks of the 640 px copy's lower half)
    "smeared_rows", "log_row_tear", "smear_run", "vertical_run", "log_lower_upper", "log_tear_prominence",
    "tear_width", "tear_position", "seam_step", "seam_columns", "shifted_continuation", "shifted_match",
    "lower_column_seam", "lower_column_gain",
    "flat_16", "green_flat", "grey_flat", "green_blocks",
    "flat_block_rows",
)

#: Side of each of the four native-resolution tiles measured for noise, impulses and fine blur.
_TILE = 128
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_IMMERKAER_16S = _IMMERKAER.astype(np.int16)
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


def _hist_quantiles(values_u8: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Quantiles of a uint8 array from its histogram (10x cheaper than np.percentile)."""
    hist = cv2.calcHist([values_u8], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(float(hist.sum()), 1.0)
    return np.searchsorted(cdf, np.asarray(quantiles)).astype(np.float32)


def _percentiles(values: np.ndarray, percents: tuple[float, ...]) -> np.ndarray:
    """np.percentile's default (linear) percentiles of a small 1-D array, without its
    per-call overhead (0.2 ms each, more than the sort of a few hundred values)."""
    ordered = np.sort(values.ravel())
    if ordered.size == 0:
        return np.zeros(len(percents), np.float32)
    positions = np.asarray(percents, np.float64) / 100.0 * (ordered.size - 1)
    return np.interp(positions, np.arange(ordered.size), ordered)


def noise_residual(channel: np.ndarray) -> np.ndarray:
    """|Immerkaer residual| of a uint8 channel (int16, borders dropped). Immerkaer's kernel is the
    difference of two Laplacians: blind to linear ramps and most edges; its norm is 6, so white
    noise of sigma s gives residuals of sigma 6 s."""
    residual = cv2.filter2D(channel, cv2.CV_16S, _IMMERKAER_16S)[1:-1, 1:-1]
    return cv2.absdiff(residual, np.zeros_like(residual))


def _block_noise(residual: np.ndarray, block: int = 16) -> np.ndarray:
    """Noise sigma per block from an Immerkaer residual. A low percentile over the blocks is
    the noise of the flattest parts of the picture, which texture does not inflate."""
    h, w = residual.shape
    bh, bw = max(1, h // block), max(1, w // block)
    means = cv2.resize(residual[: bh * block, : bw * block].astype(np.float32), (bw, bh), interpolation=cv2.INTER_AREA)
    return np.sqrt(np.pi / 2.0) * means.ravel() / 6.0


def _reblur(grey: np.ndarray) -> tuple[float, float]:
    """Crete-Roffet no-reference blur per direction (horizontal, vertical), 0 sharp .. 1 blurred.

    Blurring a sharp picture again removes much of its gradient; blurring an already blurred
    one changes little. The ratio is far less scene-dependent than a Laplacian energy.
    uint8 OpenCV arithmetic (saturating subtraction is the max(0, .) of the method)."""
    out = []
    for kernel in ((9, 1), (1, 9)):
        blurred = cv2.blur(grey, kernel)
        if kernel[0] > 1:  # horizontal neighbours
            d_f = cv2.absdiff(grey[:, 1:], grey[:, :-1])
            d_b = cv2.absdiff(blurred[:, 1:], blurred[:, :-1])
        else:
            d_f = cv2.absdiff(grey[1:], grey[:-1])
            d_b = cv2.absdiff(blurred[1:], blurred[:-1])
        s_f = float(cv2.sumElems(d_f)[0])
        s_v = float(cv2.sumElems(cv2.subtract(d_f, d_b))[0])
        out.append((s_f - s_v) / s_f if s_f > 0 else 1.0)
    return out[0], out[1]


def native_mosaic(image: np.ndarray, tile: int) -> np.ndarray:
    """Four native-resolution tile x tile crops centred on the quadrants' centres, as one
    2 tile x 2 tile image: as many pixels as one centre crop of half the side, spread over
    the scene (a centre crop can fall on sky or a blank wall). Smaller frames are used whole."""
    h, w = image.shape[:2]
    if h < 2 * tile or w < 2 * tile:
        return image
    rows = []
    for cy in (h // 4, 3 * h // 4):
        y0 = min(max(0, cy - tile // 2), h - tile)
        row = [image[y0 : y0 + tile, min(max(0, cx - tile // 2), w - tile) :][:, :tile] for cx in (w // 4, 3 * w // 4)]
        rows.append(np.hstack(row))
    return np.vstack(rows)


def _mean_abs_laplacian(grey: np.ndarray) -> float:
    """Mean |Laplacian| of a uint8 grey image (int16 arithmetic, no float copy)."""
    lap = cv2.Laplacian(grey, cv2.CV_16S)
    return float(cv2.mean(cv2.absdiff(lap, np.zeros_like(lap)))[0])


def _run_from_bottom(flags: np.ndarray) -> float:
    """Share of rows, counted up from the bottom, for which ``flags`` holds without a break."""
    if flags.size == 0:
        return 0.0
    breaks = np.flatnonzero(~flags[::-1])
    return float((breaks[0] if breaks.size else flags.size) / flags.size)


def frame_features(image: np.ndarray) -> np.ndarray:
    """Physical measurements of one BGR uint8 frame, float32 (len(FEATURE_NAMES),).

    About 9 ms for a 1080p frame on one core of this project's reference machine (version 6,
    one OpenCV thread as in the daemon; version 5 took 7 ms - the torn-frame shift search
    costs 1.30x, measured side by side on 20 test frames; version 7's column-seam measure
    costs 1.03x more, session 22)."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if min(image.shape[:2]) < 16:  # nothing to measure; keep the arithmetic finite
        image = cv2.resize(image, (max(16, image.shape[1]), max(16, image.shape[0])), interpolation=cv2.INTER_NEAREST)
    h, w = image.shape[:2]
    stats, medium, grey, small, ycc = measure(image)
    f: list[float] = [np.log1p(stats.chroma), np.log1p(stats.sharpness), stats.clipped_fraction, stats.mean_luma / 255.0]

    # Exposure: where the luma distribution sits, how much is clipped white (all channels).
    f += list(_hist_quantiles(grey, _QUANTILES) / 255.0)
    n = float(grey.size)
    b, g, r = cv2.split(medium)
    lowest = cv2.min(cv2.min(b, g), r)
    f += [np.count_nonzero(grey >= 240) / n, np.count_nonzero(grey < 16) / n, np.count_nonzero(lowest >= 245) / n]

    # Colour: the mean chroma offset, how much of the picture is near-neutral, and the colour
    # of the least saturated and of the brightest pixels (a cast moves the greys and whites).
    luma = ycc[:, :, 0]
    lit = (luma > 24) & (luma < 245)
    if np.count_nonzero(lit) < 50:
        lit = np.ones_like(lit)
    cr = ycc[:, :, 1][lit].astype(np.float32) - 128.0
    cb = ycc[:, :, 2][lit].astype(np.float32) - 128.0
    chroma = np.abs(cr) + np.abs(cb)
    means = np.asarray(cv2.mean(small)[:3]) + 1.0
    mcr, mcb = float(cr.mean()), float(cb.mean())
    # The least saturated ~10 %: chroma is a small integer, so a histogram threshold finds
    # them (ties included) at a tenth of the cost of an argpartition.
    chroma_u8 = np.minimum(chroma, 255).astype(np.uint8)
    greyest = chroma_u8 <= _hist_quantiles(chroma_u8, (0.1,))[0]
    lit_luma = luma[lit]
    bright = lit_luma >= np.partition(lit_luma, int(0.95 * (lit_luma.size - 1)))[int(0.95 * (lit_luma.size - 1))]
    f += [float(np.log(means.max() / means.min())), mcr / 20.0, mcb / 20.0, np.log1p(np.hypot(mcr, mcb))]
    f += list(np.log1p(_hist_quantiles(chroma_u8, (0.1, 0.5, 0.9))))
    f += [np.log1p(np.hypot(cr[greyest].mean(), cb[greyest].mean())), np.log1p(np.sqrt(cr.var() + cb.var())),
          float(np.log(means[2] / means[1])), float(np.log(means[0] / means[1])),
          np.log1p(np.hypot(cr[bright].mean(), cb[bright].mean()))]

    # Where each channel's range ends: a gain cast clips one channel while the others never
    # reach white, a blended tint lifts the blacks in its own colour (pixels too dark for the
    # chroma measurements above). Cast coherence: 1 when every pixel's chroma points one way.
    lows, highs = np.array([_hist_quantiles(c, (0.02, 0.99)) for c in cv2.split(small)], np.float32).T
    dark = luma <= _hist_quantiles(luma, (0.1,))[0]
    dark_cr = ycc[:, :, 1][dark].astype(np.float32) - 128.0
    dark_cb = ycc[:, :, 2][dark].astype(np.float32) - 128.0
    f += [float(np.log((highs[2] + 8.0) / (highs[1] + 8.0))), float(np.log((highs[0] + 8.0) / (highs[1] + 8.0))),
          float(lows[2] - lows[1]) / 64.0, float(lows[0] - lows[1]) / 64.0,
          np.log1p(np.hypot(dark_cr.mean(), dark_cb.mean())), float(np.hypot(mcr, mcb) / (np.hypot(cr, cb).mean() + 1.0))]

    # Sharpness: Laplacian energy per octave (blur empties the top octaves whatever the
    # scene), strong edges anywhere (a sharp subject in front of a soft background).
    octaves = []
    level = grey
    for _ in range(3):
        octaves.append(_mean_abs_laplacian(level))
        level = cv2.pyrDown(level)
    gradient = cv2.addWeighted(cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 1, 0), alpha=0.25), 1.0,
                               cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 0, 1), alpha=0.25), 1.0, 0.0)
    f += [np.log1p(octaves[0]), np.log((octaves[0] + 0.5) / (octaves[1] + 0.5)),
          np.log((octaves[1] + 0.5) / (octaves[2] + 0.5)),
          np.log1p(1000.0 * np.count_nonzero(gradient > 37) / n),
          np.log1p(float(_hist_quantiles(gradient, (0.99,))[0]))]

    # Native resolution: noise and impulses survive here, a downscale averages them.
    crop = native_mosaic(image, _TILE)
    crop_grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    native = _mean_abs_laplacian(crop_grey)
    native_half = _mean_abs_laplacian(cv2.pyrDown(crop_grey))
    f += [np.log1p(native), np.log((native + 0.5) / (native_half + 0.5)), *_reblur(crop_grey), *_reblur(grey)]
    # Immerkaer's fast noise estimate: a Laplacian-difference mask cancels image structure
    # to first order, leaving the noise (sigma in grey levels); whole crop and per block.
    residual = noise_residual(crop_grey)
    sigma = float(np.sqrt(np.pi / 2.0) * cv2.mean(residual)[0] / 6.0) if residual.size else 0.0
    blocks = _block_noise(residual)
    f += [np.log1p(sigma), *np.log1p(_percentiles(blocks, (10.0, 50.0)))]
    # Impulses: pixels far from their 3x3 median (salt and pepper survive JPEG as such
    # outliers), also per channel and only where the neighbourhood is not an edge.
    deviation = cv2.absdiff(crop_grey, cv2.medianBlur(crop_grey, 3))
    extreme = (crop_grey <= 35) | (crop_grey >= 220)
    cb_, cg_, cr_ = cv2.split(cv2.absdiff(crop, cv2.medianBlur(crop, 3)))
    colour_dev = cv2.max(cv2.max(cb_, cg_), cr_)
    isolated = (deviation > 60) & (cv2.medianBlur(deviation, 3) < 15)
    m = float(deviation.size)
    f += [np.log1p(1000.0 * np.count_nonzero(deviation > 80) / m), np.log1p(1000.0 * np.count_nonzero(deviation > 40) / m),
          np.log1p(1000.0 * np.count_nonzero((deviation > 60) & extreme) / m),
          np.log1p(1000.0 * np.count_nonzero(colour_dev > 80) / m), np.log1p(1000.0 * np.count_nonzero(isolated) / m)]

    # Broken decodes: rows repeated down from some line (little vertical change while the
    # row still varies horizontally), a seam where a torn frame's lower part starts, and
    # flat grey or green macroblocks in the lower half.
    sg = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    rows = np.abs(np.diff(sg, axis=0)).mean(1) if sg.shape[0] > 1 else np.zeros(1, np.float32)
    across = np.abs(np.diff(sg, axis=1)).mean(1)[1:] if sg.shape[0] > 1 else np.zeros(1, np.float32)
    nr = len(rows)
    smeared = float((rows[nr // 4 :] < 0.5).mean())
    tear = float(np.log((rows.max() + 0.5) / (np.median(rows) + 0.5)))
    window = np.lib.stride_tricks.sliding_window_view(np.pad(rows, 8, mode="edge"), 17)
    prominence = (rows + 0.5) / (np.median(window, axis=1) + 0.5)
    seam = int(np.argmax(prominence[2:-2])) + 2 if nr > 6 else 0
    seam_width = float((np.abs(sg[min(seam + 1, sg.shape[0] - 1)] - sg[seam]) > 12).mean())
    upper, lower = rows[: max(1, nr // 3)], rows[2 * nr // 3 :]
    f += [smeared, tear, _run_from_bottom(rows < 0.75), _run_from_bottom((rows + 0.5) / (across + 0.5) < 0.25),
          float(np.log((np.median(lower) + 0.5) / (np.median(upper) + 0.5))), float(np.log(prominence.max())),
          seam_width, seam / max(nr, 1)]
    # A torn frame's seam is a step exactly one row thin across the whole width; natural
    # horizontal edges are spread over rows by optics and compression (640 px grey).
    steps = cv2.absdiff(grey[1:], grey[:-1])
    if steps.shape[0] > 5:
        row_step = cv2.reduce(steps, 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
        around = 0.5 * (row_step[:-4] + row_step[4:])
        thin = (row_step[2:-2] + 1.0) / (around + 1.0)
        at = int(np.argmax(thin)) + 2
        columns = float((steps[at].astype(np.int16) > steps[at - 2].astype(np.int16) + steps[at + 2] + 4).mean())
        candidates = np.argsort(thin)[-3:] + 2
        f += [float(np.log(thin.max())), columns, *_shifted_continuation(grey, candidates),
              *_lower_column_seam(grey, candidates)]
    else:
        f += [0.0] * 6
    lower_half = medium[medium.shape[0] // 2 :]
    bh, bw = lower_half.shape[0] // 16, lower_half.shape[1] // 16
    if bh and bw:
        mean, std = _block_std(lower_half, 16)
        flat = std.max(axis=2) < 2.0
        green = (mean[:, :, 1] - 0.5 * (mean[:, :, 0] + mean[:, :, 2])) > 40
        greyish = (np.abs(mean - mean.mean(axis=2, keepdims=True)).max(axis=2) < 6) & (np.abs(mean.mean(axis=2) - 128) < 30)
        f += [float(flat.mean()), float((flat & green).mean()), float((flat & greyish).mean()), float(green.mean()),
              float((flat.mean(axis=1) > 0.9).mean())]
    else:
        f += [0.0] * 5
    return np.nan_to_num(np.asarray(f, np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _strip_match(strip: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Best normalised cross-correlation of ``strip`` (rows, width) at each sideways shift
    against every vertical position of ``above`` (rows, wider): one score per shift."""
    scores = cv2.matchTemplate(above, strip, cv2.TM_CCOEFF_NORMED)  # (positions, shifts)
    return np.nan_to_num(scores, nan=-1.0).max(axis=0)


def _shifted_continuation(grey: np.ndarray, seams: np.ndarray) -> tuple[float, float]:
    """Does the picture below a candidate seam continue the picture above it *shifted sideways*?

    A torn frame's lower part is another frame displaced by some pixels: just below the
    seam, the rows match content above the seam at a sideways shift far better than straight
    down. A natural horizontal edge (a shoreline, a roof line) continues nothing above it at
    any shift. Returns the largest (shifted - straight) correlation gain over ``seams`` and
    the shifted correlation itself (640 px grey). Why only the middle 30 % of the width is
    matched: the search needs room for shifts of up to 35 % of the width on both sides
    (broken decodes displace by 4-30 %) without padding artefacts."""
    h, w = grey.shape
    strip_rows, above_rows = 6, max(8, int(0.12 * h))
    margin = int(0.35 * w)
    min_shift = max(3, int(0.02 * w))
    best_gain, best_match = 0.0, 0.0
    if margin <= min_shift:  # too narrow to tell a shift from none
        return best_gain, best_match
    for seam in seams:
        seam = int(seam)
        if seam + 1 + strip_rows > h or seam - above_rows < 0:
            continue
        strip = grey[seam + 1 : seam + 1 + strip_rows, margin : w - margin].astype(np.float32)
        if float(strip.std()) < 2.0:  # a flat strip matches anything; nothing to learn here
            continue
        above = grey[seam - above_rows : seam + 1, :].astype(np.float32)
        scores = _strip_match(strip, above)  # shift index s means an offset of s - margin px
        offsets = np.abs(np.arange(scores.size) - margin)
        straight = float(scores[offsets < min_shift].max())
        shifted = float(scores[offsets >= min_shift].max())
        if shifted - straight > best_gain:
            best_gain, best_match = shifted - straight, max(shifted, 0.0)
    return best_gain, best_match


def _lower_column_seam(grey: np.ndarray, seams: np.ndarray) -> tuple[float, float]:
    """Does a one-column-thin vertical step run from a candidate seam down to the bottom?

    A torn frame's lower part is another frame moved sideways, so below the seam there is a
    column where that frame wrapped round, or where the uncovered edge the decoder filled
    begins: a vertical step one column thin in nearly every row below the seam and absent
    above it. A natural vertical edge (a wall corner, a pole) is spread over columns by optics
    and compression, and rarely runs the whole way from a horizontal line to the bottom.
    Returns, over ``seams``, the largest share of the rows below a seam in which one column
    steps (more than 4 grey levels above both neighbours two columns away) and that share
    minus the same column's share above the seam (640 px grey)."""
    h, w = grey.shape
    # a few rows below a line are crossed by any edge; the broken decodes leave >= 15 % of the height
    valid = [int(s) for s in seams if s >= 1 and h - int(s) - 1 >= max(2, h // 10)]
    if w < 8 or not valid:
        return 0.0, 0.0
    steps = cv2.absdiff(grey[:, 1:], grey[:, :-1])
    # uint8 arithmetic saturates at 255, where no step can exceed the threshold anyway: same as the exact sum
    thin = cv2.compare(steps[:, 2:-2], cv2.add(cv2.max(steps[:, :-4], steps[:, 4:]), 4), cv2.CMP_GT) // 255
    # per column, the thin steps in rows 0..seam of each seam (and in all rows, last): a cumulative sum over
    # the few segments between seams instead of over every row
    order = sorted(valid)
    upto = np.cumsum(np.add.reduceat(thin, [0] + [seam + 1 for seam in order], axis=0, dtype=np.int32), axis=0)
    rows_upto = dict(zip(order, upto[:-1]))
    best_share, best_gain = 0.0, 0.0
    for seam in valid:
        below = (upto[-1] - rows_upto[seam]).astype(np.float32) / (h - seam - 1)
        x = int(np.argmax(below))
        if float(below[x]) > best_share:
            best_share = float(below[x])
            best_gain = best_share - float(rows_upto[seam][x]) / (seam + 1)
    return best_share, best_gain


def _block_std(image: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block x block tile mean and standard deviation (per channel), via exact area
    resizes of x and x^2 (ten times cheaper than numpy reductions over a reshape)."""
    bh, bw = image.shape[0] // block, image.shape[1] // block
    x = image[: bh * block, : bw * block].astype(np.float32)
    mean = cv2.resize(x, (bw, bh), interpolation=cv2.INTER_AREA)
    var = cv2.resize(x * x, (bw, bh), interpolation=cv2.INTER_AREA) - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True)
class Fusion:
    """A small classifier over ``[log p_model (C), standardised features (F)]``.

    Without ``hidden_weights`` it is a multinomial logistic regression
    (``weights`` is (C + F, C)); with them, one ReLU hidden layer of H units
    (``hidden_weights`` (C + F, H), ``hidden_bias`` (H,), ``weights`` (H, C)):
    the measurements interact (a noise level means something else in a dark
    frame), which a linear model cannot express.
    """

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (C + F, C) or (H, C)
    bias: np.ndarray  # (C,)
    hidden_weights: np.ndarray | None = None  # (C + F, H)
    hidden_bias: np.ndarray | None = None  # (H,)

    def logits(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(N, C) network probabilities and (N, F) features -> (N, C) fused logits."""
        design = np.hstack([np.log(probabilities + 1e-4), (features - self.mean) / self.scale]).astype(np.float32)
        if self.hidden_weights is not None:
            design = np.maximum(design @ self.hidden_weights + self.hidden_bias, 0.0)
        return design @ self.weights + self.bias

    def apply(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(N, C) network probabilities and (N, F) features -> (N, C) fused probabilities."""
        logits = self.logits(probabilities, features)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    @classmethod
    def ensemble(cls, members: "list[Fusion]") -> "Fusion":
        """One fusion whose logits are the mean of the members' logits.

        Members must share the standardisation (fits on the same rows do) and have a hidden
        layer. Averaging one-hidden-layer networks is itself one such network: the hidden
        units side by side, the output weights stacked and divided by the member count -
        so an ensemble needs no new metadata format and no change in the daemon."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members:
            if m.hidden_weights is None or m.hidden_bias is None:
                raise ValueError("ensemble members need a hidden layer")
            if not (np.array_equal(m.mean, first.mean) and np.array_equal(m.scale, first.scale)):
                raise ValueError("ensemble members were standardised differently (fitted on different rows)")
        k = float(len(members))
        return cls(first.mean, first.scale,
                   (np.vstack([m.weights for m in members]) / k).astype(np.float32),
                   np.mean([m.bias for m in members], axis=0).astype(np.float32),
                   np.hstack([m.hidden_weights for m in members]).astype(np.float32),
                   np.concatenate([m.hidden_bias for m in members]).astype(np.float32))

    def to_json(self) -> str:
        d = {"features": list(FEATURE_NAMES), "features_version": FEATURES_VERSION, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
             "weights": self.weights.tolist(), "bias": self.bias.tolist()}
        if self.hidden_weights is not None and self.hidden_bias is not None:
            d["hidden_weights"] = self.hidden_weights.tolist()
            d["hidden_bias"] = self.hidden_bias.tolist()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, classes: int) -> "Fusion":
        """Parse metadata; raises ValueError when it does not fit this code or the model."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("fusion metadata is not a JSON object")
        if tuple(d.get("features", ())) != FEATURE_NAMES:
            raise ValueError(f"fusion features {d.get('features')} are not this version's {len(FEATURE_NAMES)} features")
        if d.get("features_version") != FEATURES_VERSION:
            # Same names, different arithmetic: the fitted weights would be applied to measurements
            # they were not fitted on and quietly misclassify.
            raise ValueError(f"fusion was fitted on measurements version {d.get('features_version', '< 4')}, this code "
                             f"computes version {FEATURES_VERSION}; re-export the model (streamwatch export --fuse-on)")
        f = len(FEATURE_NAMES)
        try:
            hidden = ("hidden_weights" in d) or ("hidden_bias" in d)
            fusion = cls(np.asarray(d["mean"], np.float32), np.asarray(d["scale"], np.float32),
                         np.asarray(d["weights"], np.float32), np.asarray(d["bias"], np.float32),
                         np.asarray(d["hidden_weights"], np.float32) if hidden else None,
                         np.asarray(d["hidden_bias"], np.float32) if hidden else None)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"fusion parameters are incomplete or not numeric: {e}") from e
        inputs = classes + f
        if fusion.hidden_weights is None:
            shapes_ok = fusion.weights.shape == (inputs, classes)
        else:
            h = fusion.hidden_bias.shape[0] if fusion.hidden_bias is not None and fusion.hidden_bias.ndim == 1 else -1
            shapes_ok = (h > 0 and fusion.hidden_weights.shape == (inputs, h) and fusion.weights.shape == (h, classes))
        if (not shapes_ok or fusion.mean.shape != (f,) or fusion.scale.shape != (f,) or fusion.bias.shape != (classes,)
                or not np.all(fusion.scale > 0)
                or not all(np.isfinite(a).all() for a in (fusion.mean, fusion.scale, fusion.weights, fusion.bias))
                or not all(np.isfinite(a).all() for a in (fusion.hidden_weights, fusion.hidden_bias) if a is not None)):
            raise ValueError("fusion parameters have the wrong shapes or are not finite")
        return fusion
