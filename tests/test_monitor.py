"""How the monitor combines classifier, temporal and classical evidence."""

import cv2
import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.monitor import fault_confidences


def probs(**named):
    p = np.zeros(len(CLASS_NAMES), np.float32)
    for name, value in named.items():
        p[CLASS_NAMES.index(name)] = value
    return p


def colourful():
    """Green grass under a blue sky with a red-brick wall: plenty of chroma, nothing clipped."""
    img = np.zeros((360, 640, 3), np.uint8)
    img[:120] = (200, 150, 90)  # sky (BGR)
    img[120:240] = (60, 70, 150)  # brick
    img[240:] = (50, 140, 60)  # grass
    return img


def test_classifier_verdict_passes_when_plausible():
    grey = cv2.cvtColor(cv2.cvtColor(colourful(), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert fault_confidences(probs(monochrome=0.9), 0.0, grey)["monochrome"] == np.float32(0.9)
    bright = np.full((360, 640, 3), 255, np.uint8)
    assert fault_confidences(probs(overexposed=0.8), 0.0, bright)["overexposed"] == np.float32(0.8)


def test_physically_impossible_verdicts_are_vetoed():
    image = colourful()
    scores = fault_confidences(probs(monochrome=0.9, overexposed=0.7, blurred=0.65), 0.0, image)
    assert scores["monochrome"] == 0.0 and scores["overexposed"] == 0.0
    assert abs(scores["blurred"] - 0.65) < 1e-6  # no gate for faults without a physical bound


def test_fused_models_verdicts_are_not_gated_again():
    """A fused classifier weighed chroma and clipping itself; the monitor does not measure twice."""
    scores = fault_confidences(probs(monochrome=0.9, overexposed=0.7), 0.0, colourful(), gates=False)
    assert abs(scores["monochrome"] - 0.9) < 1e-6 and abs(scores["overexposed"] - 0.7) < 1e-6


def test_frozen_takes_the_higher_of_temporal_and_classifier():
    image = colourful()
    assert fault_confidences(probs(frozen=0.3), 1.0, image)["frozen"] == 1.0
    assert abs(fault_confidences(probs(frozen=0.7), 0.0, image)["frozen"] - 0.7) < 1e-6


def test_without_model_classical_statistics_are_used():
    scores = fault_confidences(None, 0.0, colourful())
    assert set(scores) == {"overexposed", "monochrome", "blurred", "frozen"}


def test_restart_replays_undelivered_transitions_over_the_saved_fault_memory(tmp_path):
    """kill -9 between spooling a transition and rewriting faults.json: the spool is one step
    ahead. The restarted monitor replays it, so nothing is raised or cleared twice."""
    import json

    from streamwatch.config import config_from_data
    from streamwatch.monitor import Monitor

    (tmp_path / "faults.json").write_text(json.dumps({"a": {"frozen": "2026-11-22T10:00:00.000Z"}}))
    pending = [
        {"id": "1", "camera": "a", "fault": "frozen", "state": "cleared", "time": "2026-11-22T10:00:05.000Z"},
        {"id": "2", "camera": "b", "fault": "blurred", "state": "raised", "time": "2026-11-22T10:00:06.000Z"},
        {"not": "an event"},
    ]
    config = config_from_data(
        {"mqtt": {"enabled": False}, "model": {"enabled": False}, "state_dir": str(tmp_path),
         "cameras": [{"id": "a", "url": "rtsp://h/a"}, {"id": "b", "url": "rtsp://h/b"}]},
        "x", tmp_path,
    )
    monitor = Monitor([], tmp_path, pending_events=pending)
    for camera in config.cameras:
        monitor.add_camera(config, camera)
    states = monitor.fault_states()
    assert states["a"]["frozen"] is False
    assert states["b"]["blurred"] is True


class _Recorder:
    """An alert sink that keeps what it is given (the monitor's own interface, no broker needed)."""

    def __init__(self):
        self.events = []
        self.statuses = []

    def publish_event(self, event):
        self.events.append(event)

    def publish_status(self, status):
        self.statuses.append(status)


def _monitor_with(tmp_path, urls, sink):
    from streamwatch.config import config_from_data
    from streamwatch.monitor import Monitor

    config = config_from_data(
        {"mqtt": {"enabled": False}, "model": {"enabled": False}, "state_dir": str(tmp_path),
         "cameras": [{"id": cid, "url": url} for cid, url in urls.items()]},
        "x", tmp_path,
    )
    monitor = Monitor([sink], tmp_path)
    for camera in config.cameras:
        monitor.add_camera(config, camera)
    return monitor


def test_a_camera_pointed_at_another_source_starts_afresh_after_a_restart(tmp_path):
    """Open faults are restored after a restart only for the stream they were seen on: a
    camera whose URL changed meanwhile gets them cleared (one event each) and is judged anew;
    faults.json keeps a digest of the URL, never the URL (it may hold a password)."""
    import json

    first = _Recorder()
    monitor = _monitor_with(tmp_path, {"a": "rtsp://u:secret@h/one", "b": "rtsp://h/b"}, first)
    for camera in ("a", "b"):
        for _ in range(3):
            monitor.observe_signal(camera, lost=True)
    assert monitor.fault_states()["a"]["signal_lost"] and monitor.fault_states()["b"]["signal_lost"]
    saved = (tmp_path / "faults.json").read_text()
    assert "secret" not in saved and "_source" in json.loads(saved)["a"]

    again = _Recorder()
    restarted = _monitor_with(tmp_path, {"a": "rtsp://u:secret@h/two", "b": "rtsp://h/b"}, again)
    states = restarted.fault_states()
    assert states["b"]["signal_lost"] is True  # same stream: restored, nothing published twice
    assert states["a"]["signal_lost"] is False  # another stream: cleared
    assert [(e.camera, e.fault, e.state) for e in again.events] == [("a", "signal_lost", "cleared")]
    assert again.events[0].raised_at is not None
    assert "signal_lost" not in json.loads((tmp_path / "faults.json").read_text()).get("a", {})


def test_fault_memory_of_older_versions_without_a_source_digest_is_restored(tmp_path):
    import json

    (tmp_path / "faults.json").write_text(json.dumps({"a": {"blurred": "2026-11-22T10:00:00.000Z"}}))
    sink = _Recorder()
    monitor = _monitor_with(tmp_path, {"a": "rtsp://h/a"}, sink)
    assert monitor.fault_states()["a"]["blurred"] is True and sink.events == []


def test_a_damaged_time_in_the_fault_memory_does_not_stop_the_start(tmp_path):
    """A hand-edited faults.json with a time that is no ISO 8601 keeps the fault open, time unknown."""
    import json

    (tmp_path / "faults.json").write_text(json.dumps({"a": {"blurred": "yesterday"}}))
    sink = _Recorder()
    monitor = _monitor_with(tmp_path, {"a": "rtsp://h/a"}, sink)
    assert monitor.fault_states()["a"]["blurred"] is True and sink.events == []
