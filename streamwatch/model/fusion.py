"""Evidence fusion: the network's probabilities plus a few physical image measurements.

The ECA-MobileNetV2 sees a 112 px whole view and two native 112 px tiles. Some faults are
defined by whole-frame physics that such views only sample: "chroma removed entirely"
(monochrome), a noise level (gaussian_noise sigma >= 12), a share of impulse pixels
(salt_pepper >= 1 %), one colour channel out of balance (color_cast), large clipped areas
(overexposed), missing high frequencies (blurred), and the traces a broken decode leaves
(frozen: rows smeared down, flat grey/green macroblocks, a torn frame's seam). :func:`frame_features` measures these on
the full frame (about 2 ms for 1080p), and a multinomial logistic regression over
``[log p_model, standardised features]`` - fitted on the *validation* split at export
(``streamwatch export --fuse-on``, :func:`streamwatch.train.export.fit_fusion`; never on the
test split) and stored in the ONNX metadata -
turns them into the final class probabilities. Without that metadata the network's
probabilities are used unchanged. ``docs/results.md`` reports the network alone and fused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from streamwatch.checks.classical import image_stats_and_grey

#: ONNX metadata key holding the fitted fusion (JSON, see :meth:`Fusion.to_json`).
META_FUSION = "streamwatch.fusion"

#: Names of :func:`frame_features`' outputs, in order.
FEATURE_NAMES = (
    "log_chroma",
    "log_sharpness",
    "clipped_fraction",
    "mean_luma",
    "log_noise_sigma",
    "log_impulse_permille",
    "log_channel_imbalance",
    "smeared_rows",
    "log_row_tear",
    "flat_blocks",
)

#: Side of the native-resolution centre crop used for noise and impulse measurements.
_CROP = 512
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def frame_features(image: np.ndarray) -> np.ndarray:
    """Physical measurements of one BGR uint8 frame, float32 (len(FEATURE_NAMES),)."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    stats, grey_640 = image_stats_and_grey(image)
    h, w = image.shape[:2]
    y0, x0 = max(0, h // 2 - _CROP // 2), max(0, w // 2 - _CROP // 2)
    crop = cv2.cvtColor(image[y0 : y0 + _CROP, x0 : x0 + _CROP], cv2.COLOR_BGR2GRAY)  # native pixels
    # Impulses: pixels far from their 3x3 median (salt and pepper survive JPEG as such outliers).
    deviation = cv2.absdiff(crop, cv2.medianBlur(crop, 3))
    impulse = float((deviation > 80).mean())
    # Immerkaer's fast noise estimate: a Laplacian-difference mask cancels image structure
    # to first order, leaving the noise (sigma in grey levels).
    residual = cv2.filter2D(crop.astype(np.float32), -1, _IMMERKAER)[1:-1, 1:-1]
    sigma = float(np.sqrt(np.pi / 2.0) * np.abs(residual).mean() / 6.0) if residual.size else 0.0
    means = np.asarray(cv2.mean(image)[:3]) + 1.0  # numpy's mean of a 1080p frame costs 30x more
    # Broken decodes: rows repeated down from some line, and one row-to-row jump far above the
    # frame's usual (a torn frame's seam), on a 320 px wide grey; flat 8x8 blocks (macroblocks
    # filled with grey or green) in the native-resolution crop below the centre.
    gh, gw = grey_640.shape[:2]
    small = cv2.resize(grey_640, (320, max(8, round(gh * 320 / max(gw, 1)))), interpolation=cv2.INTER_AREA)
    row_change = np.abs(np.diff(small.astype(np.float32), axis=0)).mean(1)
    smeared = float((row_change[len(row_change) // 4 :] < 0.5).mean())
    tear = float(np.log((row_change.max() + 0.5) / (np.median(row_change) + 0.5)))
    lower = cv2.cvtColor(image[h // 2 : h // 2 + 256, max(0, w // 2 - 256) : w // 2 + 256], cv2.COLOR_BGR2GRAY)
    lower = lower.astype(np.float32)
    bh, bw = lower.shape[0] // 8, lower.shape[1] // 8
    blocks = lower[: bh * 8, : bw * 8].reshape(bh, 8, bw, 8).std(axis=(1, 3))
    flat = float((blocks < 0.75).mean()) if blocks.size else 0.0
    return np.array(
        [
            np.log1p(stats.chroma),
            np.log1p(stats.sharpness),
            stats.clipped_fraction,
            stats.mean_luma / 255.0,
            np.log1p(sigma),
            np.log1p(1000.0 * impulse),
            float(np.log(means.max() / means.min())),
            smeared,
            tear,
            flat,
        ],
        np.float32,
    )


@dataclass(frozen=True)
class Fusion:
    """Multinomial logistic regression over [log p_model (C), standardised features (F)]."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (C + F, C)
    bias: np.ndarray  # (C,)

    def apply(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(N, C) network probabilities and (N, F) features -> (N, C) fused probabilities."""
        design = np.hstack([np.log(probabilities + 1e-4), (features - self.mean) / self.scale])
        logits = design @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps({"features": list(FEATURE_NAMES), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                           "weights": self.weights.tolist(), "bias": self.bias.tolist()})

    @classmethod
    def from_json(cls, text: str, classes: int) -> "Fusion":
        """Parse metadata; raises ValueError when it does not fit this code or the model."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("fusion metadata is not a JSON object")
        if tuple(d.get("features", ())) != FEATURE_NAMES:
            raise ValueError(f"fusion features {d.get('features')} are not {list(FEATURE_NAMES)}")
        f = len(FEATURE_NAMES)
        fusion = cls(np.asarray(d["mean"], np.float32), np.asarray(d["scale"], np.float32),
                     np.asarray(d["weights"], np.float32), np.asarray(d["bias"], np.float32))
        if (fusion.mean.shape != (f,) or fusion.scale.shape != (f,) or fusion.weights.shape != (classes + f, classes)
                or fusion.bias.shape != (classes,) or not np.all(fusion.scale > 0)):
            raise ValueError("fusion parameters have the wrong shapes")
        return fusion
