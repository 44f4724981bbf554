"""Video-loss screens: the flat black, blue or grey picture a DVR, encoder or NVR re-stream
sends when its camera is gone.

Such a stream keeps delivering frames, so the sampler's clock never sees the signal drop, and
the classifier - trained on pictures of scenes - calls the empty screen ``blurred`` (black,
grey) or ``color_cast`` (blue). The daemon reports it as ``signal_lost`` instead
(:class:`streamwatch.monitor.Monitor`).

A screen counts as flat when nearly every pixel sits within two grey levels of one colour,
measured *without* averaging (every 6th pixel of every 6th row), so the sensor noise and light
gradients of a live scene - even a dark one or a plain wall - keep it from looking flat; the
share left over allows a caption such as ``NO VIDEO``, a burned-in clock and the chroma that
4:2:0 coding smears around them. Measured (session 10): black, blue, DVR-blue and grey screens
with a caption and a clock, libx264 CRF 23-40 at 1280x720 and 704x576: 0.958-0.985 of the
picture flat; the real footage of ``../shared/data/train`` (every 5th frame of its 8 videos):
at most 0.60 (a coin on a blank table); 3 of 5,200 JPEG crops of the dataset's stock
photos (a studio wall filling the crop) reach 0.93. A flat near-white picture is not a loss screen: that is a
blinded sensor (``overexposed``).
"""

from __future__ import annotations

import numpy as np

#: Largest deviation (grey levels, any channel) from the screen's colour a flat pixel may show.
FLAT_TOLERANCE = 2
#: Share of the picture that must be flat (the rest: a caption, an OSD clock, a logo).
FLAT_MIN_SHARE = 0.93
#: A flat picture brighter than this (mean of the three channels) is a blinded sensor, not a loss screen.
LOSS_SCREEN_MAX_LEVEL = 235.0
#: Pixel stride of the measurement (every 36th pixel of a frame; no averaging).
STRIDE = 6
#: Stride of a first, coarser look that turns away ordinary pictures cheaply.
COARSE_STRIDE = 24


def flat_share(image: np.ndarray, stride: int = STRIDE) -> tuple[float, np.ndarray]:
    """(share of pixels within :data:`FLAT_TOLERANCE` of the picture's median colour, that colour),
    measured on every ``stride``-th pixel of every ``stride``-th row."""
    if image.ndim == 2:
        image = image[:, :, None]
    probe = image[::stride, ::stride].reshape(-1, image.shape[2])
    if probe.size == 0:
        return 0.0, np.zeros(image.shape[2])
    colour = np.median(probe, axis=0)
    deviation = np.abs(probe.astype(np.int16) - colour.astype(np.int16)).max(axis=1)
    return float(np.count_nonzero(deviation <= FLAT_TOLERANCE)) / deviation.size, colour


def is_video_loss_screen(image: np.ndarray) -> bool:
    """Whether a decoded frame (BGR or grey uint8) is a flat, non-white video-loss screen."""
    coarse, _ = flat_share(image, COARSE_STRIDE)
    if coarse < FLAT_MIN_SHARE - 0.1:  # a live picture: about 0.1 ms instead of 2
        return False
    share, colour = flat_share(image)
    return share >= FLAT_MIN_SHARE and float(np.mean(colour)) <= LOSS_SCREEN_MAX_LEVEL
