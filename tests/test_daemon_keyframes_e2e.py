"""End to end with keyframe-only decoding (``decode: keyframes``): the real daemon, a real clip
(H.264, keyframe every 2 s) frozen in the middle, a real broker."""

from __future__ import annotations

import time

import pytest

from tests.support.broker import wait_until
from tests.support.daemon import DaemonProcess, write_config
from tests.test_daemon_e2e import base_config, transitions


@pytest.mark.slow
def test_keyframe_decoding_raises_frozen_once_and_clears_once(tmp_path, clip_factory, broker, mqtt_collector):
    # Sampled every 2 s = every keyframe. Frozen from 6 s to 24 s; frozen_after 6 s and
    # raise_after 3: raised at ~16 s; clear_after 3: cleared at ~28 s. The clean camera and the
    # frozen one run side by side through the same decoder.
    frozen_clip = clip_factory(seconds=34, freeze=(6, 24), content="pan", size=(640, 360), gop=50)
    clean_clip = clip_factory(seconds=34, content="real", size=(640, 360), gop=50)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    faults = {"frozen": {"raise_after": 3, "clear_after": 3}}
    cameras = [
        {"id": "gate", "url": str(frozen_clip), "decode": "keyframes", "sample_interval": 2, "frozen_after": 6,
         "faults": faults},
        {"id": "street", "url": str(clean_clip), "decode": "keyframes", "sample_interval": 2, "frozen_after": 6,
         "faults": faults},
    ]
    config = write_config(tmp_path / "sw.yaml", base_config(tmp_path, broker.port, cameras))
    daemon = DaemonProcess(config).start()
    started = time.monotonic()
    try:
        assert wait_until(lambda: ("gate", "frozen", "cleared") in transitions(collector), 50), (
            transitions(collector), daemon.log_text()[-4000:])
        time.sleep(2.5)  # one more sample: nothing else may happen
    finally:
        elapsed = daemon.stop()
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f} s"
    assert time.monotonic() - started <= 60
    seen = transitions(collector)
    assert [t for t in seen if t[0] == "gate"] == [("gate", "frozen", "raised"), ("gate", "frozen", "cleared")], seen
    assert [t for t in seen if t[0] == "street"] == [], seen
    logs = daemon.log_events()
    started_logs = [e for e in logs if e.get("event") == "camera_started"]
    assert {e["camera"]: e.get("decode") for e in started_logs} == {"gate": "keyframes", "street": "keyframes"}
    connected = [e for e in logs if e.get("event") == "camera_connected"]
    assert connected and all(e.get("decoder") == "pyav-keyframes" for e in connected), connected
    assert not [e for e in logs if e.get("event") == "decode_fallback"]
