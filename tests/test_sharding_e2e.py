"""Three replicas share one config and one broker: every camera is watched by exactly one."""

from __future__ import annotations

import json
from collections import Counter

from streamwatch.config import config_from_data
from streamwatch.sharding import owner
from tests.support.broker import wait_until
from tests.support.daemon import DaemonProcess, write_config


def test_three_local_replicas_partition_the_cameras(tmp_path, broker, mqtt_collector):
    cameras = [{"id": f"cam{i:02d}", "url": f"rtsp://127.0.0.1:9/none{i}", "signal_timeout": 2} for i in range(9)]
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "sw-shard"},
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "model": {"enabled": False},
        "shard": {"count": 3},  # index from HOSTNAME, as in a StatefulSet
        "cameras": cameras,
    }
    config = write_config(tmp_path / "sw.yaml", data)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    replicas = [
        DaemonProcess(config, env={"HOSTNAME": f"streamwatch-{i}"}, log_path=tmp_path / f"r{i}.log").start()
        for i in range(3)
    ]
    try:
        def raised():
            return [json.loads(m.payload) for m in collector.on("streamwatch/events")]

        assert wait_until(lambda: len(raised()) >= 9, 40), [r.log_text()[-2000:] for r in replicas]
        per_camera = Counter(e["camera"] for e in raised() if e["state"] == "raised")
        assert per_camera == Counter({c["id"]: 1 for c in cameras})
        started = [r.wait_log("daemon_started", timeout=5) for r in replicas]
        assert sum(s["cameras"] for s in started) == 9
        for i, replica in enumerate(replicas):
            mine = {c["id"] for c in cameras if owner(c["id"], 3) == i}
            watched = {e["camera"] for e in replica.log_events() if e.get("event") == "camera_started"}
            assert watched == mine
            assert collector.last(f"streamwatch/available/{i}").text == "online"
        # Separate state dirs and client ids: no replica kicked another off the broker.
        dirs = {config_from_data(data | {"shard": {"count": 3, "index": i}}, "x", tmp_path).state_dir for i in range(3)}
        assert len(dirs) == 3 and all(d.exists() for d in dirs)
    finally:
        for r in replicas:
            r.stop()
    assert all(collector.last(f"streamwatch/available/{i}").text == "offline" for i in range(3))
