"""Video-loss screens (a DVR's flat blue / black / grey 'NO VIDEO' picture) are ``signal_lost``.

Real encoded video throughout: the screens are H.264 clips made with ffmpeg and decoded by
OpenCV; the live pictures are decoded real footage; the end-to-end test runs the daemon
against a real Mosquitto broker.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamwatch.checks.blank import flat_share, is_video_loss_screen
from streamwatch.train.video import sampled_frames
from tests.support.broker import wait_until
from tests.support.daemon import write_config
from tests.support.media import ffmpeg_bin


def decoded_frames(path: Path, every: int = 1) -> list[np.ndarray]:
    frames = [frame for _, frame in sampled_frames(path, every)]
    assert frames, f"could not decode {path}"
    return frames


def encoded_screen(tmp_path: Path, colour: str, size: str, crf: int) -> np.ndarray:
    """A flat screen of ``colour`` with a caption bar and a ticking box, through libx264."""
    out = tmp_path / f"{colour}-{size}-{crf}.mp4"
    graph = ("drawbox=x=iw*0.4:y=ih*0.46:w=iw*0.2:h=ih*0.05:color=white:t=fill,"
             "drawbox=x='10+mod(floor(t*10),25)*4':y=10:w=12:h=12:color=white:t=fill,format=yuv420p")
    subprocess.run([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                    "-i", f"color=c={colour}:size={size}:rate=25", "-t", "2", "-vf", graph,
                    "-c:v", "libx264", "-crf", str(crf), str(out)], check=True)
    return decoded_frames(out)[-1]


@pytest.mark.parametrize("colour", ["black", "0x10289F", "blue", "gray"])
@pytest.mark.parametrize("size,crf", [("1280x720", 23), ("704x576", 40)])
def test_encoded_loss_screens_are_recognised(tmp_path, colour, size, crf):
    frame = encoded_screen(tmp_path, colour, size, crf)
    assert is_video_loss_screen(frame), flat_share(frame)


def test_live_pictures_are_not_loss_screens(clip_factory):
    """Night city time-lapse (dark, moving), a static photograph with sensor noise and a
    ticking clock: every frame is a picture, never a loss screen."""
    for params in (dict(seconds=6, content="real"), dict(seconds=4, content="still", noise=4, clock_overlay=True)):
        for frame in decoded_frames(clip_factory(**params), every=5):
            assert not is_video_loss_screen(frame), (params, flat_share(frame))


def test_a_blinded_white_sensor_is_not_a_loss_screen():
    white = np.full((720, 1280, 3), 252, np.uint8)
    assert flat_share(white)[0] == 1.0 and not is_video_loss_screen(white)
    assert is_video_loss_screen(np.zeros((720, 1280), np.uint8))  # grey decoders too


def test_monitor_raises_signal_lost_after_three_loss_screens_and_clears_on_picture(tmp_path, clip_factory):
    from streamwatch.config import config_from_data
    from streamwatch.monitor import LOSS_SCREEN_SAMPLES, Monitor

    class Recorder:
        """An in-process sink: the transitions the monitor publishes, in order."""

        def __init__(self):
            self.events = []

        def publish_event(self, event):
            self.events.append((event.camera, event.fault, event.state))

        def publish_status(self, status):
            pass

    config = config_from_data({"mqtt": {"enabled": False}, "model": {"enabled": False}, "state_dir": str(tmp_path),
                               "cameras": [{"id": "dvr", "url": "rtsp://h/dvr"}]}, "x", tmp_path)
    sink = Recorder()
    monitor = Monitor([sink], tmp_path)
    monitor.add_camera(config, config.cameras[0])
    screen = decoded_frames(clip_factory(seconds=2, content="still", loss_screen=(0, 5)))[-1]
    picture = decoded_frames(clip_factory(seconds=2, content="still", noise=4))[-1]
    t = time.monotonic()
    for i in range(LOSS_SCREEN_SAMPLES - 1):
        monitor.observe_sample("dvr", screen, t + i, None, None)
        monitor.observe_signal("dvr", False)  # frames keep arriving: the clock sees no outage
    assert sink.events == []
    monitor.observe_sample("dvr", screen, t + 5, None, None)
    assert sink.events == [("dvr", "signal_lost", "raised")]
    assert monitor.status("dvr").online is False
    for i in range(20):  # a static screen must not start the frozen timer or any image fault
        monitor.observe_sample("dvr", screen, t + 6 + i, None, None)
        monitor.observe_signal("dvr", False)
    assert sink.events == [("dvr", "signal_lost", "raised")]
    monitor.observe_sample("dvr", picture, t + 30, None, None)
    monitor.observe_signal("dvr", False)
    monitor.observe_signal("dvr", False)
    assert sink.events[-1] == ("dvr", "signal_lost", "cleared")
    assert monitor.status("dvr").online is True


@pytest.mark.slow
def test_daemon_reports_a_dvr_loss_screen_as_signal_lost(tmp_path, clip_factory, broker, mqtt_collector, daemon_factory):
    """A camera whose recorder shows its blue video-loss screen from 6 s to 24 s (frames keep
    coming, a clock keeps ticking): ``signal_lost`` raised and cleared over MQTT, and the empty
    screen raises no image fault (without the check, the statistics call it ``blurred``)."""
    clip = clip_factory(seconds=36, content="real", size=(640, 360), loss_screen=(6, 24), clock_overlay=True)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    config = write_config(tmp_path / "sw.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-test-{tmp_path.name}"},
        "state_dir": str(tmp_path / "state"), "log": {"format": "json"}, "model": {"enabled": False},
        "cameras": [{"id": "dvr", "url": str(clip)}],
    })
    daemon = daemon_factory(config)

    def seen():
        return [(e["camera"], e["fault"], e["state"]) for e in
                (json.loads(m.payload) for m in collector.on("streamwatch/events"))]

    assert wait_until(lambda: ("dvr", "signal_lost", "cleared") in seen(), 60), (seen(), daemon.log_text()[-3000:])
    daemon.stop()
    assert seen() == [("dvr", "signal_lost", "raised"), ("dvr", "signal_lost", "cleared")], seen()
    raised = next(json.loads(m.payload) for m in collector.on("streamwatch/events"))
    when = datetime.fromisoformat(raised["time"].replace("Z", "+00:00"))
    assert when <= datetime.now(timezone.utc)
