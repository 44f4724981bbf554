"""Black letterbox / pillarbox bars and clock strips are cut away before classification.

The pictures are real footage decoded from H.264 clips (tests/support/media.py); the model is
the shipped one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.model.borders import MIN_KEPT, STRIDE, active_area, active_picture
from streamwatch.train.dataset import read_video_frames

ASSETS_MODEL = Path(__file__).resolve().parents[1] / "streamwatch" / "assets" / "model.onnx"


def decoded_frame(clip, index: int = 10) -> np.ndarray:
    """Frame ``index`` of an encoded clip (its last frame if it is shorter)."""
    frames = read_video_frames(clip, index + 1)
    assert frames, clip
    return frames[-1]


def jpeg(image: np.ndarray, quality: int = 85) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def letterbox(picture: np.ndarray, bar: int) -> np.ndarray:
    h, w = picture.shape[:2]
    out = np.zeros((h + 2 * bar, w, 3), np.uint8)
    out[bar : bar + h] = picture
    return out


def pillarbox(picture: np.ndarray, bar: int) -> np.ndarray:
    h, w = picture.shape[:2]
    out = np.zeros((h, w + 2 * bar, 3), np.uint8)
    out[:, bar : bar + w] = picture
    return out


def clock_strip(picture: np.ndarray, height: int) -> np.ndarray:
    """A black strip under the picture with a white OSD clock written in it."""
    h, w = picture.shape[:2]
    out = np.zeros((h + height, w, 3), np.uint8)
    out[:h] = picture
    cv2.putText(out, "2026-12-04 10:00:00  CAM 03", (10, h + int(height * 0.7)), cv2.FONT_HERSHEY_SIMPLEX,
                height / 50, (255, 255, 255), 2)
    return out


@pytest.fixture(scope="module")
def picture(clip_factory):
    """A daylight photograph through H.264 at 960x540."""
    return decoded_frame(clip_factory(seconds=2, content="still", size=(960, 540)))


def close(found: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return all(abs(a - b) <= 2 * STRIDE for a, b in zip(found, expected))  # probe stride + the margin cut


def test_bars_and_strips_are_found(picture):
    h, w = picture.shape[:2]
    assert active_area(picture) == (0, h, 0, w)
    assert close(active_area(jpeg(letterbox(picture, 120))), (120, 120 + h, 0, w))
    assert close(active_area(jpeg(pillarbox(picture, 160))), (0, h, 160, 160 + w))
    assert close(active_area(jpeg(clock_strip(picture, 60))), (0, h, 0, w))
    boxed = letterbox(picture, 120)
    assert active_picture(boxed).shape[1:] == picture.shape[1:] and abs(active_picture(boxed).shape[0] - picture.shape[0]) <= 2 * STRIDE
    assert active_picture(picture) is picture  # no bars: the frame itself, no copy
    grey = cv2.cvtColor(jpeg(letterbox(picture, 120)), cv2.COLOR_BGR2GRAY)  # grey frames, as make_views takes them
    assert active_area(grey) == active_area(grey[:, :, None]) and close(active_area(grey), (120, 120 + h, 0, w))


def test_dark_and_empty_pictures_are_left_whole(clip_factory):
    """A black screen, a dark night scene and a broken decode smearing its rows down keep every
    row: a smear is fault evidence, not a bar."""
    from streamwatch.train.degrade import _broken_decode

    black = np.zeros((540, 960, 3), np.uint8)
    assert active_area(black) == (0, 540, 0, 960)
    for index in (5, 40, 90):  # night city time-lapse: dark, with a dark sky
        night = decoded_frame(clip_factory(seconds=6, content="real", size=(960, 540)), index)
        top, bottom, left, right = active_area(night)
        assert bottom - top >= MIN_KEPT * 540 and right - left >= MIN_KEPT * 960
        for y0 in (200, 400):
            smeared = jpeg(_broken_decode(night, np.random.default_rng(index), "smear", y0, None))
            assert active_area(smeared)[1] == 540


FOREST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train" / "stills" / "plasma_Path.jpg"


@pytest.mark.skipif(not FOREST.exists(), reason="shared training footage not present")
def test_a_smeared_dark_forest_is_not_a_bar():
    """Rows of dark tree trunks smeared down (a test-split frozen sample that an earlier rule cut
    half away): 83-90 % black, but 10-17 % mid-grey - no bar."""
    from streamwatch.train.degrade import _broken_decode

    forest = cv2.resize(cv2.imread(str(FOREST)), (943, 590), interpolation=cv2.INTER_AREA)
    for y0 in (250, 350, 450):
        smeared = jpeg(_broken_decode(forest, np.random.default_rng(y0), "smear", y0, None), 90)
        assert active_area(smeared) == (0, 590, 0, 943)


@pytest.mark.skipif(not ASSETS_MODEL.exists(), reason="no shipped model")
def test_the_classifier_sees_the_picture_not_the_bars(picture):
    """A letterboxed or clock-stripped normal picture gets the plain picture's verdict; without
    the cut (the network and fusion on the whole frame) the flat black letterbox bars read as a
    broken decode, ``frozen`` - the failure this guards against. (The models of sessions 14-21
    also read the uncut 50 px clock strip as ``frozen``; session 22's fusion does not, p 0.33.)"""
    from streamwatch.model.fusion import frame_features
    from streamwatch.model.runtime import Classifier

    class WholeFrame(Classifier):
        def frame_inputs(self, frame):
            return self.preprocess(frame), frame_features(frame)

    clf, whole = Classifier(None, threads=2), WholeFrame(None, threads=2)
    frozen = CLASS_NAMES.index("frozen")
    variants = [jpeg(letterbox(picture, 130)), jpeg(clock_strip(picture, 50))]
    plain = clf.predict([jpeg(picture)])[0]
    boxed = clf.predict(variants)
    assert (boxed.argmax(1) == plain.argmax()).all(), (plain, boxed)
    assert (boxed[:, frozen] < 0.5).all()
    uncut = whole.predict(variants[:1])
    assert uncut[0, frozen] > 0.5, uncut
