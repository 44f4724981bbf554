"""A colourless picture through H.264 and back: still monochrome (neutralise_decoder_tint).

The clip is encoded from grey BGR frames piped to ffmpeg (libx264, yuv420p) and decoded by
OpenCV, the way a camera stuck in black-and-white reaches the daemon. The encoder's chroma
planes round off 128 and the decoder turns that into a uniform tint of a few grey levels,
which the classifier (trained on JPEG stills, whose grey stays grey) called ``normal``.
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.checks.classical import classical_scores, neutralise_decoder_tint
from tests.support.media import REAL_STILL, ffmpeg_bin

MONOCHROME = CLASS_NAMES.index("monochrome")


def _scene(width: int = 960, height: int = 540) -> np.ndarray:
    """A real photograph when the shared data is there, else a textured colour pattern."""
    img = cv2.imread(str(REAL_STILL)) if REAL_STILL.is_file() else None
    if img is None:
        rng = np.random.default_rng(0)
        img = cv2.resize(rng.integers(0, 256, (27, 48, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def _h264_round_trip(frames: list[np.ndarray], path) -> list[np.ndarray]:
    """Encode BGR frames with libx264 (yuv420p, CRF 23) and decode them with OpenCV."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_bin(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "25",
           "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    assert len(out) == len(frames)
    return out


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    scene = _scene()
    rng = np.random.default_rng(1)

    def clip(colourless: bool) -> list[np.ndarray]:
        # A slow pan with fresh sensor noise per frame; the colour is lost after the noise, as in a camera.
        frames = []
        for i in range(30):
            f = np.roll(np.clip(scene + rng.normal(0, 1.5, scene.shape), 0, 255).astype(np.uint8), i, axis=1)
            frames.append(cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if colourless else f)
        return frames

    folder = tmp_path_factory.mktemp("tint")
    return {"grey": _h264_round_trip(clip(True), folder / "grey.mp4"),
            "colour": _h264_round_trip(clip(False), folder / "colour.mp4")}


def test_decoded_grey_video_is_made_exactly_grey(decoded):
    for frame in decoded["grey"][::5]:
        out = neutralise_decoder_tint(frame)
        assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 2] == out[:, :, 1]).all()
        # Nothing but the tint changed: every pixel moves by at most the tint's few levels.
        assert np.abs(out.astype(np.int16) - frame).max() <= 4


def test_colour_pictures_are_left_alone(decoded):
    for frame in decoded["colour"][::5]:
        assert neutralise_decoder_tint(frame) is frame
    # A white wall with one small coloured object is not a grey picture.
    wall = np.full((360, 640, 3), 235, np.uint8)
    wall[200:216, 300:316] = (40, 60, 160)
    assert neutralise_decoder_tint(wall) is wall


def test_uniform_tint_of_a_few_levels_is_removed_and_a_real_cast_is_not():
    grey = cv2.cvtColor(cv2.cvtColor(_scene(), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.int16)
    tinted = np.clip(grey + np.array([-3, 0, -2], np.int16), 0, 255).astype(np.uint8)  # what OpenCV decoded (B-G -3, R-G -2)
    out = neutralise_decoder_tint(tinted)
    assert out is not tinted and (out[:, :, 0] == out[:, :, 2]).all()
    cast = np.clip(grey + np.array([-12, 0, 10], np.int16), 0, 255).astype(np.uint8)  # a faint but real cast
    assert neutralise_decoder_tint(cast) is cast


def test_classifier_and_classical_check_call_decoded_grey_video_monochrome(decoded):
    from streamwatch.model.runtime import Classifier

    frames = decoded["grey"][::3]
    probs = Classifier(threads=2).predict(frames)
    assert (probs.argmax(1) == MONOCHROME).all(), probs.round(2)
    assert all(classical_scores(f)["monochrome"] >= 0.5 for f in frames)
