"""Patrol mode end to end: the real daemon patrols ten cameras with four workers, real clips,
a real broker. Exactly the frozen camera and the unreachable camera raise their fault, after
their first visit; the achieved cycle is logged per round and exported as a gauge."""

from __future__ import annotations

import json
import urllib.request

import pytest

from streamwatch.config import config_from_data
from tests.support.broker import free_port, wait_until
from tests.support.daemon import DaemonProcess, write_config

CYCLE = 16.0


def _transitions(collector) -> list[tuple[str, str, str]]:
    events = [json.loads(m.payload) for m in collector.on("streamwatch/events")]
    return [(e["camera"], e["fault"], e["state"]) for e in events]


def test_patrol_config_defaults_and_validation(tmp_path):
    config = config_from_data({"mqtt": {"enabled": False}}, "x", tmp_path)
    assert config.patrol.enabled is False and config.patrol.cycle == 300 and config.patrol.samples == 3
    from streamwatch.config import ConfigError

    with pytest.raises(ConfigError, match=r"patrol\.samples"):
        config_from_data({"patrol": {"samples": 1}}, "x", tmp_path)
    with pytest.raises(ConfigError, match=r"patrol\.bogus: unknown key"):
        config_from_data({"patrol": {"bogus": 1}}, "x", tmp_path)


def test_kth_highest():
    from streamwatch.patrol import kth_highest

    assert kth_highest([0.1, 0.9, 0.7], 2) == 0.7
    assert kth_highest([0.9], 2) == 0.0


@pytest.mark.slow
def test_patrol_ten_cameras_frozen_and_unreachable(tmp_path, clip_factory, rtsp_server_factory, broker,
                                                   mqtt_collector):
    size = (640, 360)
    clips = {
        "real": clip_factory(seconds=20, content="real", size=size, gop=50),
        "pan": clip_factory(seconds=20, content="pan", size=size, gop=50),
        "noise": clip_factory(seconds=20, content="still", noise=6, size=size, gop=50),
        "clock": clip_factory(seconds=20, content="still", clock_overlay=True, size=size, gop=50),
        "frozen": clip_factory(seconds=20, content="pan", freeze=(0, 20), size=size, gop=50),
    }
    cameras = [
        {"id": "c01", "url": str(clips["real"]), "loop": True},
        {"id": "c02", "url": str(clips["pan"]), "loop": True},
        {"id": "c03", "url": str(clips["noise"]), "loop": True},
        {"id": "c04", "url": str(clips["clock"]), "loop": True},
        {"id": "stuck", "url": str(clips["frozen"]), "loop": True},
        {"id": "c06", "url": str(clips["real"]), "loop": True},
        {"id": "gone", "url": "rtsp://user:pa55word@127.0.0.1:9/none"},
        {"id": "c08", "url": str(clips["pan"]), "loop": True},
        {"id": "c09", "url": str(clips["noise"]), "loop": True},
        {"id": "c10", "url": rtsp_server_factory(clips["real"]).url},  # a real RTSP camera
    ]
    metrics_port = free_port()
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "sw-patrol"},
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "model": {"enabled": False},
        "metrics_port": metrics_port,
        "patrol": {"enabled": True, "cycle": CYCLE, "dwell": 6, "samples": 3, "workers": 4, "open_timeout": 4},
        "cameras": cameras,
    }
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    daemon = DaemonProcess(write_config(tmp_path / "sw.yaml", data)).start()
    try:
        # Both faults after the first visit (first round: 10 cameras / 4 workers, ~4 s each).
        assert wait_until(
            lambda: {("stuck", "frozen", "raised"), ("gone", "signal_lost", "raised")} <= set(_transitions(collector)),
            CYCLE + 5,
        ), (_transitions(collector), daemon.log_text()[-4000:])
        # Two full rounds: nothing else raised, nothing flaps, the cycle is reported.
        second = daemon.wait_log("patrol_round", timeout=2 * CYCLE + 20, round=2)
        assert second is not None, daemon.log_text()[-4000:]
        first = daemon.wait_log("patrol_round", timeout=1, round=1)
        for entry in (first, second):
            assert entry["cameras"] == 10 and entry["visits"] == 10 and entry["failed"] == 1, entry
            assert entry["busy_seconds"] < CYCLE, entry
            assert CYCLE - 0.5 <= entry["cycle_seconds"] <= CYCLE + 2.0, entry
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "streamwatch_patrol_cycle_seconds " in text and "streamwatch_patrol_round_busy_seconds " in text
        assert 'streamwatch_patrol_visit_ok{camera="gone"} 0.0' in text
        assert 'streamwatch_patrol_visit_ok{camera="c01"} 1.0' in text
        assert 'streamwatch_fault_active{camera="stuck",fault="frozen"} 1.0' in text
        assert 'streamwatch_samples_total{camera="c03"}' in text
        assert 'streamwatch_patrol_visits{camera="c10"}' in text and 'visit_ok{camera="c10"} 1.0' in text
        started = daemon.wait_log("daemon_started", timeout=1)
        assert started["cameras"] == 10
        # SIGHUP: the camera list changes from the next visit on.
        import signal

        data["cameras"] = [c for c in cameras if c["id"] != "c09"] + [{"id": "c11", "url": str(clips["pan"]),
                                                                       "loop": True}]
        write_config(tmp_path / "sw.yaml", data)
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_log("config_reloaded", timeout=10)
        assert reloaded is not None and reloaded["added"] == ["c11"] and reloaded["removed"] == ["c09"], reloaded
        assert wait_until(lambda: collector.last("streamwatch/c11/status") is not None, 5)
    finally:
        elapsed = daemon.stop()
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f} s"
    assert sorted(_transitions(collector)) == [("gone", "signal_lost", "raised"), ("stuck", "frozen", "raised")], (
        _transitions(collector))
    status = json.loads(collector.last("streamwatch/gone/status").payload)
    assert status["online"] is False
    assert "pa55word" not in daemon.log_text()
    # One log line per round and per camera state change, not one per visit.
    lines = daemon.log_events()
    assert sum(e.get("event") == "patrol_camera_unavailable" for e in lines) == 1
    assert not any(e.get("event") == "camera_connected" for e in lines)
