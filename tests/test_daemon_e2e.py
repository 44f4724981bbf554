"""End to end: the real daemon process, real clips, a real RTSP server, a real broker."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import urllib.request

import pytest

from tests.support.broker import free_port, wait_until
from tests.support.daemon import write_config


def base_config(tmp_path: Path, mqtt_port: int, cameras: list[dict], **extra) -> dict:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": f"sw-test-{tmp_path.name}"},
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "model": {"enabled": False},
        "cameras": cameras,
    }
    config.update(extra)
    return config


def events_of(collector) -> list[dict]:
    return [json.loads(m.payload) for m in collector.on("streamwatch/events")]


def transitions(collector) -> list[tuple[str, str, str]]:
    return [(e["camera"], e["fault"], e["state"]) for e in events_of(collector)]


@pytest.mark.slow
def test_freeze_clean_unreachable_and_broker_outage(
    tmp_path, clip_factory, broker, tcp_proxy, mqtt_collector, daemon_factory
):
    """A clip frozen from 20 s to 40 s raises `frozen` once and clears it once; a clean clip
    raises nothing; an unreachable camera raises `signal_lost`; the broker is killed and
    restarted in the middle (while `frozen` is raised) and no event is lost or duplicated."""
    frozen_clip = clip_factory(seconds=52, freeze=(20, 40), content="pan", size=(640, 360))
    clean_clip = clip_factory(seconds=52, content="real", size=(640, 360))
    proxy = tcp_proxy(broker.port)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    cameras = [
        {"id": "gate", "url": str(frozen_clip)},
        {"id": "street", "url": str(clean_clip)},
        {"id": "garage", "url": "rtsp://user:pa55word@127.0.0.1:9/none", "signal_timeout": 4},
    ]
    config = write_config(tmp_path / "sw.yaml", base_config(tmp_path, proxy.port, cameras))
    daemon = daemon_factory(config)
    t0 = time.monotonic()
    assert wait_until(lambda: ("garage", "signal_lost", "raised") in transitions(collector), 20), daemon.log_text()[-3000:]
    assert collector.last("streamwatch/available").text == "online"

    # Broker dies at ~15 s and comes back at ~42 s: the frozen raise (~33 s) happens in between.
    time.sleep(max(0.0, 15 - (time.monotonic() - t0)))
    proxy.block()
    broker.kill()
    time.sleep(max(0.0, 42 - (time.monotonic() - t0)))
    broker.start()
    collector.wait_subscribed(2, timeout=15)  # the test's subscriber is back before the daemon
    proxy.unblock()

    assert wait_until(lambda: ("gate", "frozen", "cleared") in transitions(collector), 30), (
        transitions(collector), daemon.log_text()[-4000:])
    elapsed = daemon.stop()
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f} s"

    seen = transitions(collector)
    gate = [t for t in seen if t[0] == "gate"]
    assert gate == [("gate", "frozen", "raised"), ("gate", "frozen", "cleared")], seen
    assert [t for t in seen if t[0] == "street"] == [], seen
    assert [t for t in seen if t[0] == "garage"] == [("garage", "signal_lost", "raised")], seen
    ids = [e["id"] for e in events_of(collector)]
    assert len(ids) == len(set(ids)), "an event was delivered twice"

    cleared = [e for e in events_of(collector) if e["state"] == "cleared"][0]
    raised = [e for e in events_of(collector) if e["camera"] == "gate" and e["state"] == "raised"][0]
    assert cleared["raised_at"] == raised["time"]
    # Raised after frozen_after (10 s) + raise_after (3 samples) from the freeze at 20 s.
    log = {e["event"]: e for e in daemon.log_events() if e.get("camera") == "gate"}
    assert "fault_raised" in log and "fault_cleared" in log

    # Credentials never leave the process.
    assert "pa55word" not in daemon.log_text()
    assert all(b"pa55word" not in m.payload for m in collector.messages)
    # Clean stop: offline retained, status says the camera is offline while the signal is lost.
    assert collector.last("streamwatch/available").text == "offline"
    status = json.loads(collector.last("streamwatch/garage/status").payload)
    assert status["online"] is False and status["faults"] == ["signal_lost"]


def test_sighup_reload_add_remove_and_broken_config(tmp_path, clip_factory, broker, mqtt_collector, daemon_factory):
    clip = clip_factory(seconds=10, content="pan")
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#", "homeassistant/#"])
    config_path = tmp_path / "sw.yaml"
    metrics_port = free_port()
    first = base_config(tmp_path, broker.port, [{"id": "cam_a", "url": str(clip), "loop": True},
                                               {"id": "cam_b", "url": str(clip), "loop": True}],
                        metrics_port=metrics_port)
    write_config(config_path, first)
    daemon = daemon_factory(config_path)
    assert wait_until(lambda: collector.last("streamwatch/cam_b/status") is not None, 15), daemon.log_text()
    assert wait_until(lambda: any("cam_b_frozen" in m.topic for m in collector.messages), 10)
    # OpenCV does not split calls over its own threads beside the daemon's (docs/performance.md).
    assert daemon.wait_log("daemon_started", timeout=10)["opencv_threads"] == 1

    # Prometheus metrics reflect the running cameras.
    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    assert wait_until(lambda: 'streamwatch_samples_total{camera="cam_a"}' in scrape(), 10)
    text = scrape()
    assert 'streamwatch_camera_connected{camera="cam_b"} 1.0' in text
    assert 'streamwatch_fault_active{camera="cam_a",fault="frozen"} 0.0' in text
    assert "streamwatch_capture_to_decision_seconds_count" in text

    # A broken config is rejected; the daemon keeps running the old one.
    config_path.write_text("cameras: [{id: cam_a, url: " + str(clip) + ", bogus: 1}]\n")
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_log("reload_rejected", timeout=10)
    assert rejected is not None and "cameras[0].bogus: unknown key" in rejected["error"]
    assert daemon.alive()

    # A valid change: cam_b removed (retained state cleared), cam_c added.
    second = base_config(tmp_path, broker.port, [{"id": "cam_a", "url": str(clip), "loop": True},
                                                {"id": "cam_c", "url": str(clip), "loop": True}])
    write_config(config_path, second)
    collector.clear()
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_log("config_reloaded", timeout=10)
    assert reloaded is not None and reloaded["added"] == ["cam_c"] and reloaded["removed"] == ["cam_b"]
    assert wait_until(lambda: collector.last("streamwatch/cam_c/status") is not None, 10)
    assert wait_until(lambda: (m := collector.last("streamwatch/cam_b/status")) is not None and m.payload == b"", 10)
    assert daemon.stop() < 5.0


def test_run_with_bad_config_exits_2_with_message(tmp_path):
    import subprocess
    import sys

    bad = write_config(tmp_path / "bad.yaml", {"cameras": [{"id": "x", "url": "rtsp://h/x", "sample_interval": "often"}]})
    proc = subprocess.run([sys.executable, "-m", "streamwatch.cli", "run", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{bad}: cameras[0].sample_interval:" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unwritable_state_dir_is_a_clear_startup_error(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = write_config(tmp_path / "c.yaml", {"state_dir": str(blocker / "state"), "model": {"enabled": False},
                                             "mqtt": {"enabled": False}})
    proc = subprocess.run([sys.executable, "-m", "streamwatch.cli", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "state_dir" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_rtsp_camera_lost_and_recovered(tmp_path, clip_factory, rtsp_server_factory, broker, mqtt_collector,
                                        daemon_factory):
    """A real RTSP server is killed: `signal_lost` is raised, the reader reconnects with backoff,
    and the fault clears once the server is back, without restarting the daemon."""
    clip = clip_factory(seconds=10, content="pan")
    server = rtsp_server_factory(clip)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    cameras = [{"id": "door", "url": server.url, "signal_timeout": 3}]
    daemon = daemon_factory(write_config(tmp_path / "sw.yaml", base_config(tmp_path, broker.port, cameras)))
    assert daemon.wait_log("camera_connected", timeout=20, camera="door"), daemon.log_text()[-3000:]
    time.sleep(3)
    assert transitions(collector) == []
    server.kill()
    assert wait_until(lambda: ("door", "signal_lost", "raised") in transitions(collector), 20), daemon.log_text()[-3000:]
    status = json.loads(collector.last("streamwatch/door/status").payload)
    assert status["online"] is False
    server.restart()
    assert wait_until(lambda: ("door", "signal_lost", "cleared") in transitions(collector), 40), daemon.log_text()[-3000:]
    assert json.loads(collector.last("streamwatch/door/status").payload)["online"] is True
    assert transitions(collector) == [("door", "signal_lost", "raised"), ("door", "signal_lost", "cleared")]
    assert daemon.alive()


def test_restart_keeps_open_faults_of_the_same_stream_and_drops_those_of_another(tmp_path, broker, mqtt_collector,
                                                                                 daemon_factory):
    """Open faults survive a restart only on the stream they were seen on: the same camera
    pointed at another URL while the daemon was down gets them cleared and judged anew, so a
    fault there is raised again (docs/mqtt.md, "Across restarts")."""
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    config_path = tmp_path / "sw.yaml"

    def run_with(url: str):
        cameras = [{"id": "door", "url": url, "signal_timeout": 2}]
        return daemon_factory(write_config(config_path, base_config(tmp_path, broker.port, cameras)))

    nowhere = f"rtsp://127.0.0.1:{free_port()}/one"
    daemon = run_with(nowhere)
    assert wait_until(lambda: ("door", "signal_lost", "raised") in transitions(collector), 20), daemon.log_text()[-3000:]
    assert daemon.stop() < 5.0

    daemon = run_with(nowhere)  # the same stream: nothing raised or cleared twice
    assert daemon.wait_log("daemon_started", timeout=20), daemon.log_text()[-3000:]
    time.sleep(4)  # two signal timeouts
    assert transitions(collector) == [("door", "signal_lost", "raised")]
    assert daemon.stop() < 5.0

    daemon = run_with(f"rtsp://127.0.0.1:{free_port()}/two")  # another stream, just as dead
    assert wait_until(lambda: len(transitions(collector)) >= 3, 20), daemon.log_text()[-3000:]
    assert transitions(collector) == [("door", "signal_lost", "raised"), ("door", "signal_lost", "cleared"),
                                      ("door", "signal_lost", "raised")]
    assert daemon.wait_log("fault_state_discarded", timeout=5, camera="door")
    assert daemon.stop() < 5.0
