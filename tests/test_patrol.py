"""PatrolMonitor: one verdict per visit, debounce in visits (no media; see test_patrol_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamwatch.config import config_from_data
from streamwatch.patrol import RESULT_TIMEOUT, PatrolMonitor


class Sink:
    def __init__(self):
        self.events = []
        self.statuses = []

    def publish_event(self, event):
        self.events.append((event.camera, event.fault, event.state))

    def publish_status(self, status):
        self.statuses.append(status)


def _config(tmp_path, **camera):
    return config_from_data(
        {"mqtt": {"enabled": False}, "model": {"enabled": False}, "state_dir": str(tmp_path),
         "patrol": {"enabled": True}, "cameras": [{"id": "cam", "url": "rtsp://h/x", **camera}]},
        "x", tmp_path,
    )


@pytest.fixture
def monitor(tmp_path):
    sink = Sink()
    mon = PatrolMonitor([sink], tmp_path, raise_visits=1, clear_visits=1)
    config = _config(tmp_path)
    mon.add_camera(config, config.cameras[0])
    mon.sink = sink
    return mon


rng = np.random.default_rng(0)
SCENE = rng.integers(40, 200, (180, 320, 3), dtype=np.uint8)


def _image(shift: int = 0) -> np.ndarray:
    return np.roll(SCENE, shift, axis=1)


def visit(mon, images_motion, t0=0.0, spacing=2.0, probabilities=None, submitted=None, frames=None):
    mon.begin_visit("cam", 4.0)
    for i, (image, motion) in enumerate(images_motion):
        mon.observe_sample("cam", image, t0 + i * spacing, motion, probabilities)
    n = len(images_motion)
    mon.end_visit("cam", n if submitted is None else submitted, n * 50 if frames is None else frames)


def test_one_still_visit_raises_frozen_and_one_live_visit_clears_it(monitor):
    visit(monitor, [(_image(), 0.0)] * 3)
    assert monitor.sink.events == [("cam", "frozen", "raised")]
    visit(monitor, [(_image(i * 20), 5.0) for i in range(3)], t0=300)
    assert monitor.sink.events[-1] == ("cam", "frozen", "cleared")
    assert monitor.pending_visits() == 0


@pytest.mark.parametrize("motions", [(0.5, 0.0, 0.0), (0.0, 0.0, 0.5), (0.0, 0.5, 0.0)])
def test_a_visit_is_frozen_only_if_every_sample_is_still(monitor, motions):
    visit(monitor, [(_image(), m) for m in motions])
    assert monitor.sink.events == []


def test_a_changing_picture_is_not_frozen_even_without_motion(monitor):
    visit(monitor, [(_image(i * 20), 0.0) for i in range(3)])  # keyframe-only stream, motion 0
    assert monitor.sink.events == []


def test_a_visit_too_short_to_judge_a_freeze(monitor):
    visit(monitor, [(_image(), 0.0)] * 2, spacing=0.5)  # 0.5 s span < 3/4 of the planned 4 s
    assert monitor.sink.events == []


def test_history_does_not_cross_visits(monitor):
    """A live visit, then a frozen one: raised after the frozen visit alone."""
    visit(monitor, [(_image(i * 20), 5.0) for i in range(3)])
    visit(monitor, [(_image(7), 0.0)] * 3, t0=300)
    assert monitor.sink.events == [("cam", "frozen", "raised")]


def test_no_frames_is_signal_lost_after_one_visit(monitor):
    visit(monitor, [], frames=0)
    assert monitor.sink.events == [("cam", "signal_lost", "raised")]
    assert monitor.status("cam").online is False
    visit(monitor, [(_image(i * 20), 5.0) for i in range(3)], t0=300)
    assert monitor.sink.events[-1] == ("cam", "signal_lost", "cleared")
    assert monitor.status("cam").online is True


def test_a_visit_of_video_loss_screens_is_signal_lost(monitor):
    """A recorder showing its flat blue loss screen (caption bar included) the whole visit: no
    picture, so ``signal_lost``; one such sample among pictures is no outage."""
    screen = np.zeros((180, 320, 3), np.uint8)
    screen[:] = (159, 40, 16)
    screen[80:90, 120:200] = 255
    visit(monitor, [(screen, 0.0)] * 3)
    assert monitor.sink.events == [("cam", "signal_lost", "raised")]
    visit(monitor, [(_image(i * 20), 5.0) for i in range(3)], t0=300)
    assert monitor.sink.events[-1] == ("cam", "signal_lost", "cleared")
    visit(monitor, [(screen, 0.0), (_image(20), 5.0), (_image(40), 5.0)], t0=600)
    assert [e for e in monitor.sink.events if e[2] == "raised"] == [("cam", "signal_lost", "raised")]
    assert monitor.pending_visits() == 0


def test_image_faults_need_raise_after_samples_within_one_visit(monitor):
    from streamwatch import CLASS_NAMES

    def probs(p_mono):
        out = np.zeros(len(CLASS_NAMES), np.float32)
        out[CLASS_NAMES.index("monochrome")] = p_mono
        out[CLASS_NAMES.index("normal")] = 1 - p_mono
        return out

    grey = np.repeat(SCENE[:, :, :1], 3, axis=2)  # no chroma: the monitor's plausibility gate lets it pass
    live = [(np.roll(grey, i * 20, axis=1), 5.0) for i in range(3)]
    monitor.begin_visit("cam", 4.0)
    for i, (p, (image, m)) in enumerate(zip((0.9, 0.2, 0.95), live)):
        monitor.observe_sample("cam", image, i * 2.0, m, probs(p))
    monitor.end_visit("cam", 3, 150)
    assert monitor.sink.events == []  # 2 of 3 positive; raise_after = 3 samples
    monitor.begin_visit("cam", 4.0)
    for i, (p, (image, m)) in enumerate(zip((0.9, 0.7, 0.95), live)):
        monitor.observe_sample("cam", image, 10 + i * 2.0, m, probs(p))
    monitor.end_visit("cam", 3, 150)
    assert monitor.sink.events == [("cam", "monochrome", "raised")]


def test_results_after_the_visit_ended_and_dropped_samples(monitor):
    monitor.begin_visit("cam", 4.0)
    monitor.observe_sample("cam", _image(), 0.0, 0.0, None)
    monitor.end_visit("cam", 3, 150)  # two results still in the batcher
    assert monitor.pending_visits() == 1
    monitor.observe_sample("cam", _image(), 2.0, 0.0, None)
    monitor.observe_sample("cam", _image(), 4.0, 0.0, None)
    assert monitor.pending_visits() == 0 and monitor.sink.events == [("cam", "frozen", "raised")]

    monitor.begin_visit("cam", 4.0)
    monitor.end_visit("cam", 3, 150)  # all three samples dropped by the batcher
    import time

    monitor.sweep(time.monotonic() + RESULT_TIMEOUT + 1)
    assert monitor.pending_visits() == 0
    assert monitor.sink.events == [("cam", "frozen", "raised")]  # no picture verdict, signal fine


def test_debounce_in_visits_is_configurable(tmp_path):
    sink = Sink()
    mon = PatrolMonitor([sink], tmp_path, raise_visits=2, clear_visits=1)
    config = _config(tmp_path)
    mon.add_camera(config, config.cameras[0])
    mon.sink = sink
    visit(mon, [], frames=0)
    assert sink.events == []
    visit(mon, [], frames=0)
    assert sink.events == [("cam", "signal_lost", "raised")]


def test_interrupted_visit_has_no_verdict(monitor):
    monitor.begin_visit("cam", 4.0)
    monitor.discard_visit("cam")
    assert monitor.pending_visits() == 0 and monitor.sink.events == []
