"""Decode strategy per camera (config ``decode``) and frame-driven sampling of keyframe readers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streamwatch.config import ConfigError, config_from_data
from streamwatch.daemon import _FrameDrivenSampler, camera_fingerprint, choose_decode


def config(defaults=None, **camera):
    return config_from_data({"defaults": defaults or {}, "cameras": [{"id": "cam", "url": "rtsp://cam.example/stream", **camera}]})


def test_decode_defaults_to_auto_with_a_keyframe_gap_fallback():
    cfg = config()
    assert cfg.defaults.decode == "auto" and cfg.cameras[0].decode is None
    assert choose_decode(cfg, cfg.cameras[0]) == ("keyframes", 1.25)  # default sample_interval 1 s
    cfg = config({"sample_interval": 2})
    assert choose_decode(cfg, cfg.cameras[0]) == ("keyframes", 2.5)


@pytest.mark.parametrize("mode", ["all", "keyframes"])
def test_explicit_decode_per_camera_or_default(mode):
    cfg = config(decode=mode)
    assert choose_decode(cfg, cfg.cameras[0]) == (mode, None)
    cfg = config({"decode": mode})
    assert choose_decode(cfg, cfg.cameras[0]) == (mode, None)


def test_decode_is_validated_and_part_of_the_fingerprint():
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.decode"):
        config(decode="sometimes")
    a, b = config(), config(decode="all")
    assert camera_fingerprint(a, a.cameras[0]) != camera_fingerprint(b, b.cameras[0])
    c = config({"decode": "all"})
    assert camera_fingerprint(a, a.cameras[0]) != camera_fingerprint(c, c.cameras[0])


def frames_at(times):
    return [SimpleNamespace(captured_mono=t, seq=i) for i, t in enumerate(times)]


@pytest.mark.parametrize(
    "gop, jitter, expected_interval",
    [(2.0, 0.05, 2.0), (1.0, 0.0, 2.0), (0.5, 0.0, 2.0), (3.0, 0.0, 3.0)],
    ids=["gop=interval", "gop=interval/2", "gop=interval/4", "gop>interval"],
)
def test_frame_driven_sampling_keeps_the_rate(gop, jitter, expected_interval):
    taken = []
    sampler = _FrameDrivenSampler("cam", 2.0, taken.append, lambda _d: True)
    times = [i * gop + (jitter if i % 2 else -jitter) for i in range(int(120 / gop))]
    for frame in frames_at(times):
        sampler(frame)
    got = [s.frame.captured_mono for s in taken]
    gaps = [b - a for a, b in zip(got, got[1:])]
    assert abs(sum(gaps) / len(gaps) - expected_interval) < 0.05, gaps
    assert all(s.due_mono == s.frame.captured_mono for s in taken)  # sampled the moment it arrived


def test_frame_driven_sampler_of_a_stopped_camera_is_silent():
    taken = []
    sampler = _FrameDrivenSampler("cam", 2.0, taken.append, lambda _d: False)
    for frame in frames_at([0, 2, 4]):
        sampler(frame)
    assert taken == []
