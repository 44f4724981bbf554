"""Temporal (frozen) and classical checks on real H.264 clips made with ffmpeg."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamwatch.checks.classical import classical_scores
from streamwatch.checks.temporal import FrozenDetector, MotionMeter
from tests.support.media import LIVE_STATIC_SCENES


def frozen_timeline(path, frozen_after=3.0, sample_every=1.0, use_motion=True):
    """Decode every frame like the reader, sample once per ``sample_every`` s, return verdicts."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    meter, detector = MotionMeter(), FrozenDetector(frozen_after, noise_floor=0.01)
    verdicts, index, next_sample = [], 0, sample_every / 2
    while True:
        ok, image = cap.read()
        if not ok:
            break
        motion = meter.update(image)
        t = index / fps
        if t >= next_sample:
            next_sample += sample_every
            verdicts.append((round(t), detector.update(image, t, motion if use_motion else None).frozen))
        index += 1
    cap.release()
    assert verdicts, f"no frames decoded from {path}"
    return verdicts


def test_frozen_stretch_detected_and_released(clip_factory):
    clip = clip_factory(seconds=16, freeze=(4, 12), content="real", gop=50)
    verdicts = frozen_timeline(clip)
    frozen_at = [t for t, f in verdicts if f]
    # Frozen from 4 s; with frozen_after=3 s the verdict holds from ~7 s until motion resumes at 12 s.
    assert frozen_at, verdicts
    assert 6 <= min(frozen_at) <= 8 and max(frozen_at) <= 12, verdicts
    assert all(not f for t, f in verdicts if t < 6 or t >= 13), verdicts


def test_frozen_detected_with_one_second_gop(clip_factory):
    # Every 1 s sample pair straddles a keyframe: only consecutive-frame stillness proves freezing.
    clip = clip_factory(seconds=14, freeze=(3, 13), content="pan", gop=25)
    assert any(f for _, f in frozen_timeline(clip))


@pytest.mark.parametrize("params", LIVE_STATIC_SCENES.values(), ids=LIVE_STATIC_SCENES.keys())
def test_live_static_scenes_are_not_frozen(clip_factory, params):
    clip = clip_factory(seconds=14, **params)
    verdicts = frozen_timeline(clip)
    assert not any(f for _, f in verdicts), verdicts


def test_classical_statistics_on_degraded_frames(clip_factory):
    cap = cv2.VideoCapture(str(clip_factory(seconds=2, content="pan", size=(1280, 720))))
    ok, frame = cap.read()
    cap.release()
    assert ok
    clean = classical_scores(frame)
    assert max(clean.values()) < 0.5, clean
    grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert classical_scores(grey)["monochrome"] >= 0.5
    linear = (frame.astype(np.float32) / 255.0) ** 2.2 * 3.0
    bright = (np.clip(linear, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    assert classical_scores(bright)["overexposed"] >= 0.5
    blurred = cv2.GaussianBlur(frame, (0, 0), 6)
    assert classical_scores(blurred)["blurred"] >= 0.5
