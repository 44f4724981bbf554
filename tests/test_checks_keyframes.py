"""The frozen check with keyframe-only decoding (PyAVReader), on real H.264 clips made with ffmpeg.

Mirrors tests/test_checks.py, but every sample is a keyframe delivered by ``PyAVReader`` and its
``Frame.motion`` is the difference between that keyframe and its successor (the one extra frame
the reader decodes per keyframe). Clips are decoded as fast as possible (``realtime=False``) and
the timeline is the keyframes' stream time.
"""

from __future__ import annotations

import threading

import pytest

from streamwatch.checks.temporal import FrozenDetector, MotionMeter
from streamwatch.sources.pyav_reader import PyAVReader
from tests.support.media import LIVE_STATIC_SCENES

FPS = 25


def keyframes(path, gop: int, **kwargs):
    """Every frame PyAVReader delivers for a file, decoded once, unpaced."""
    frames, done = [], threading.Event()
    reader = PyAVReader("cam", str(path), motion_meter=MotionMeter, realtime=False, on_frame=frames.append, **kwargs)
    keyframes.reader = reader
    reader.start()
    try:
        for _ in range(600):
            if reader.status().ended:
                break
            done.wait(0.05)
        assert reader.status().ended, reader.status()
    finally:
        assert reader.stop(2.0)
    assert frames, f"no frames from {path}"
    return frames


def frozen_timeline(path, gop: int, frozen_after: float = 3.0, successor_below: float | None = None):
    detector = FrozenDetector(frozen_after, noise_floor=0.01)
    out = []
    for i, frame in enumerate(keyframes(path, gop, successor_below=successor_below)):
        t = i * gop / FPS  # keyframe i is at stream time i * gop / fps
        out.append((round(t), detector.update(frame.image, t, frame.motion).frozen, frame.motion))
    return out


@pytest.mark.parametrize("gop", [25, 50])
def test_keyframes_and_successor_motion(clip_factory, gop):
    """One frame per keyframe, each with a motion value; exactly 0 where the picture is held."""
    clip = clip_factory(seconds=16, freeze=(4, 12), content="real", gop=gop)
    frames = keyframes(clip, gop)
    assert len(frames) == 16 * FPS // gop
    assert all(f.motion is not None for f in frames)
    held = [f.motion for i, f in enumerate(frames) if 4 <= i * gop / FPS < 11.9]
    live = [f.motion for i, f in enumerate(frames) if i * gop / FPS < 4 or i * gop / FPS >= 12]
    assert max(held) <= 0.01, held
    assert min(live) > 0.5, live  # moving city footage


# successor_below: None = the successor of every keyframe is decoded; 2.5 = only when the
# keyframe did not already change by the frozen check's change threshold (the daemon's setting).
SUCCESSOR = pytest.mark.parametrize("successor_below", [None, 2.5], ids=["always-successor", "successor-if-unchanged"])


@SUCCESSOR
@pytest.mark.parametrize("gop", [25, 50])
def test_frozen_stretch_detected_and_released(clip_factory, gop, successor_below):
    clip = clip_factory(seconds=16, freeze=(4, 12), content="real", gop=gop)
    verdicts = frozen_timeline(clip, gop, successor_below=successor_below)
    frozen_at = [t for t, f, _ in verdicts if f]
    # Frozen from 4 s; with frozen_after=3 s the verdict holds from 7-8 s until motion resumes at 12 s.
    assert frozen_at, verdicts
    assert 7 <= min(frozen_at) <= 8 and max(frozen_at) < 12, verdicts
    assert all(not f for t, f, _ in verdicts if t < 7 or t >= 12), verdicts


@SUCCESSOR
@pytest.mark.parametrize("gop", [25, 50])
@pytest.mark.parametrize("params", LIVE_STATIC_SCENES.values(), ids=LIVE_STATIC_SCENES.keys())
def test_live_static_scenes_are_not_frozen(clip_factory, params, gop, successor_below):
    clip = clip_factory(seconds=14, gop=gop, **params)
    verdicts = frozen_timeline(clip, gop, successor_below=successor_below)
    assert not any(f for _, f, _ in verdicts), verdicts


def test_successor_decoded_only_while_the_picture_might_be_frozen(clip_factory):
    """With successor_below, moving footage skips the extra frame, a held picture does not."""
    clip = clip_factory(seconds=16, freeze=(4, 12), content="real", gop=50)
    frames = keyframes(clip, 50, successor_below=2.5)
    reader = keyframes.reader
    assert len(frames) == 8 and all(f.motion is not None for f in frames)
    # keyframe 0 (no predecessor), 4 s (the first held picture: changed -> skipped), 6, 8, 10 s held
    assert reader.successors + reader.successors_skipped == 8
    assert 3 <= reader.successors <= 5, (reader.successors, reader.successors_skipped)
    held = [f.motion for i, f in enumerate(frames) if 6 <= i * 2 < 12]
    assert max(held) <= 0.01, held


def test_fallback_to_every_frame_without_regular_keyframes(clip_factory):
    """A stream whose keyframes are further apart than ``fallback_after`` is decoded in full."""
    clip = clip_factory(seconds=8, content="pan", gop=250)  # one keyframe in 10 s
    frames = keyframes(clip, 250, fallback_after=2.0)
    # keyframe at 0 s, then from ~2 s on every frame: far more than one frame
    assert len(frames) > 100, len(frames)
    assert all(f.motion is not None for f in frames[2:])  # the first full-decode frame has no predecessor


def test_explicit_keyframes_mode_has_no_fallback(clip_factory):
    clip = clip_factory(seconds=8, content="pan", gop=250)
    assert len(keyframes(clip, 250)) == 1
