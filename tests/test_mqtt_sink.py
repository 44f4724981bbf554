"""MQTTSink against a real Mosquitto (tests/support/broker.py): no mocks.

Broker failures are real: ``broker.kill()`` is a SIGKILL of the mosquitto process, and the
"daemon crash" cases SIGKILL a child Python process that runs the sink.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import structlog

from streamwatch.config import CameraConfig, DiscoveryConfig, MQTTConfig
from streamwatch.events import CameraStatus, FaultEvent, utc_now
from streamwatch.sinks.mqtt import MQTTSink
from streamwatch.sinks.spool import Spool
from tests.support.broker import retained_snapshot, wait_until

REPO = Path(__file__).resolve().parents[1]
P = "streamwatch"


def make_config(port: int, **kwargs) -> MQTTConfig:
    kwargs.setdefault("client_id", f"sw-test-{os.getpid()}-{time.monotonic_ns()}")
    return MQTTConfig(host="127.0.0.1", port=port, **kwargs)


@pytest.fixture
def sink_factory(tmp_path):
    """``sink_factory(port, spool=None, start=True, **sink_kwargs) -> MQTTSink``; stopped at teardown."""
    made: list[tuple[MQTTSink, Spool]] = []

    def make(port: int, spool: Spool | None = None, *, start: bool = True, config: MQTTConfig | None = None, **kw):
        if spool is None:
            spool = Spool(tmp_path / f"spool-{len(made)}.sqlite3", 10_000)
        kw.setdefault("reconnect_min_delay", 0.05)
        kw.setdefault("reconnect_max_delay", 0.2)
        sink = MQTTSink(config or make_config(port), spool, **kw)
        made.append((sink, spool))
        if start:
            sink.start()
        return sink

    yield make
    for sink, spool in made:
        sink.stop(timeout=0.5)
        spool.close()


def event(i: int, camera: str = "cam1", fault: str = "frozen", state: str = "raised") -> FaultEvent:
    now = utc_now()
    raised_at = now - timedelta(seconds=30) if state == "cleared" else None
    return FaultEvent(camera, fault, state, 0.9, now, raised_at=raised_at, id=f"ev-{i:05d}")  # type: ignore[arg-type]


def status(camera: str, active: set[str], faults=("frozen", "blurred", "signal_lost"), online=True) -> CameraStatus:
    return CameraStatus(camera, camera.upper(), online, {f: f in active for f in faults}, utc_now())


def camera(cam_id: str, name: str | None = None) -> CameraConfig:
    return CameraConfig(id=cam_id, url=f"rtsp://10.0.0.1/{cam_id}", name=name)


def event_ids(collector) -> list[str]:
    return [json.loads(m.payload)["id"] for m in collector.on(f"{P}/events")]


def snapshot_when(broker, topic: str, predicate, timeout: float = 5.0) -> dict[str, bytes]:
    """Poll the broker's retained messages under ``topic`` until ``predicate(snapshot)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        snap = retained_snapshot(broker.host, broker.port, topic, settle=0.15)
        if predicate(snap):
            return snap
        assert time.monotonic() < deadline, f"retained state never matched: {snap}"


def wait_connected(sink: MQTTSink, timeout: float = 10.0) -> None:
    assert wait_until(lambda: sink.connected, timeout), "sink did not connect"


# -- availability ----------------------------------------------------------------------------


def test_online_retained_and_offline_on_clean_stop(broker, sink_factory):
    sink = sink_factory(broker.port)
    wait_connected(sink)
    assert wait_until(lambda: retained_snapshot(broker.host, broker.port, f"{P}/available").get(f"{P}/available") == b"online", 5)
    sink.stop(timeout=2)
    assert retained_snapshot(broker.host, broker.port, f"{P}/available") == {f"{P}/available": b"offline"}


CHILD = r"""
import sys, time
from pathlib import Path
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: the marker only
from streamwatch.config import MQTTConfig
from streamwatch.events import FaultEvent, utc_now
from streamwatch.sinks.mqtt import MQTTSink
from streamwatch.sinks.spool import Spool

port, spool_path, count = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
spool = Spool(spool_path, 10_000)
sink = MQTTSink(MQTTConfig(host="127.0.0.1", port=port, client_id="sw-child"), spool,
                reconnect_min_delay=0.05, reconnect_max_delay=0.2)
sink.start()
for i in range(count):
    sink.publish_event(FaultEvent("cam1", "frozen", "raised", 0.9, utc_now(), id=f"child-{i:05d}"))
print("queued", flush=True)
time.sleep(120)
"""


def run_child(port: int, spool_path: Path, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), str(spool_path), str(count)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    watchdog = threading.Timer(20, proc.kill)  # never hang the suite on a broken child
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.strip() == "queued":
                return proc
            seen.append(line)
    finally:
        watchdog.cancel()
    proc.kill()
    raise AssertionError(f"child did not start: {''.join(seen)}")


def test_last_will_offline_when_the_daemon_process_is_killed(broker, tmp_path, mqtt_collector):
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/available"])
    child = run_child(broker.port, tmp_path / "child.sqlite3", 0)
    try:
        assert collector.wait_for(lambda c: c.texts(f"{P}/available")[-1:] == ["online"], 10)
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        assert collector.wait_for(lambda c: c.texts(f"{P}/available")[-1:] == ["offline"], 10)
        assert retained_snapshot(broker.host, broker.port, f"{P}/available") == {f"{P}/available": b"offline"}
    finally:
        child.kill()
        child.wait(5)


# -- retained state --------------------------------------------------------------------------


def test_status_and_fault_states_retained_and_republished_after_broker_restart(broker, sink_factory, mqtt_collector):
    sink = sink_factory(broker.port)
    wait_connected(sink)
    sink.publish_status(status("cam1", {"frozen"}))
    sink.publish_status(status("cam2", set(), online=False))
    sink.publish_status(status("cam1", {"frozen", "signal_lost"}))  # latest wins

    def expected(snap: dict[str, bytes]) -> bool:
        return snap.get(f"{P}/cam1/signal_lost") == b"ON" and f"{P}/cam2/status" in snap

    snap = snapshot_when(broker, f"{P}/#", expected)
    assert snap[f"{P}/cam1/frozen"] == b"ON"
    assert snap[f"{P}/cam1/blurred"] == b"OFF"
    assert snap[f"{P}/cam2/frozen"] == b"OFF"
    body = json.loads(snap[f"{P}/cam1/status"])
    assert body["camera"] == "cam1" and body["online"] is True
    assert body["faults"] == ["frozen", "signal_lost"]
    assert json.loads(snap[f"{P}/cam2/status"])["online"] is False
    assert snap[f"{P}/available"] == b"online"

    # A broker without persistence forgets everything: the sink must publish it all again.
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/#"])
    broker.kill()
    broker.start()
    collector.wait_subscribed(2)
    assert collector.wait_for(lambda c: c.last(f"{P}/cam2/status") is not None and c.last(f"{P}/available") is not None, 10)
    snapshot_when(broker, f"{P}/#", lambda s: s == snap)


# -- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_events_in_order_not_retained_with_configured_qos(broker, sink_factory, mqtt_collector, tmp_path, protocol):
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"], qos=1)
    spool = Spool(tmp_path / "spool.sqlite3", 10_000)
    sink = sink_factory(broker.port, spool, protocol=protocol)
    n = 300
    for i in range(n):
        sink.publish_event(event(i, state="raised" if i % 2 == 0 else "cleared"))
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= n, 20)
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(n)]
    msgs = collector.on(f"{P}/events")
    assert not any(m.retain for m in msgs)
    assert {m.qos for m in msgs} == {1}
    first, second = json.loads(msgs[0].payload), json.loads(msgs[1].payload)
    assert first["state"] == "raised" and "raised_at" not in first
    assert second["state"] == "cleared" and second["raised_at"].endswith("Z")
    assert wait_until(lambda: len(spool) == 0, 5), "acked events must leave the spool"
    assert retained_snapshot(broker.host, broker.port, f"{P}/events") == {}


def test_broker_killed_and_restarted_mid_stream_loses_nothing_and_keeps_order(
    broker, sink_factory, mqtt_collector, tcp_proxy
):
    """SIGKILL the broker while events stream in bursts (so some are in flight), keep
    producing through the outage, restart it: every event arrives, in order.

    The sink reaches the broker through a relay. The relay is cut just before the kill:
    the sink sees its connection die mid-stream exactly as in a broker crash, but the
    broker gets no chance to acknowledge an event it then dies without forwarding (a
    broker without persistence can lose what it already acknowledged; no publisher can
    prevent that). After the restart the relay opens only once the test's subscriber is
    back, so every message is observable. Duplicates are allowed only for events whose
    acknowledgement the cut swallowed (at-least-once); the test checks exactly that.
    """
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    proxy = tcp_proxy(broker.port)
    sink = sink_factory(proxy.port)
    wait_connected(sink)
    n, kill_at = 600, 200
    producer_done = threading.Event()

    def produce() -> None:
        for i in range(n):
            sink.publish_event(event(i))
            if i % 20 == 19:
                time.sleep(0.02)
        producer_done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= kill_at, 10)
    proxy.block()
    assert wait_until(lambda: not sink.connected, 5)
    unacked_at_cut = {key for key, _, _ in sink._inflight.values()}  # spool keys: event i has key i + 1
    time.sleep(0.2)  # the broker forwards what it received before the cut
    broker.kill()
    got_before = len(collector.on(f"{P}/events"))
    time.sleep(0.3)  # the producer keeps going while the broker is gone
    broker.start()
    collector.wait_subscribed(2)
    proxy.unblock()
    producer.join(10)
    assert producer_done.is_set()
    assert got_before < n, "the kill must happen mid-stream"
    assert collector.wait_for(lambda c: len(set(event_ids(c))) >= n, 20), len(collector.on(f"{P}/events"))
    time.sleep(0.3)  # a late extra message would show up here
    ids = event_ids(collector)
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == [f"ev-{i:05d}" for i in range(n)], "lost or out of order"
    duplicated = {int(x[3:]) + 1 for x in ids if ids.count(x) > 1}
    assert duplicated <= unacked_at_cut, "only events unacknowledged at the cut may come twice"
    assert len(sink.spool) == 0


def test_backlog_survives_sink_stop_while_broker_down(broker, sink_factory, mqtt_collector, tmp_path):
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path, 10_000)
    sink = sink_factory(broker.port, spool)
    wait_connected(sink)
    broker.kill()
    assert wait_until(lambda: not sink.connected, 5)
    for i in range(50):
        sink.publish_event(event(i))
    started = time.monotonic()
    sink.stop(timeout=1.0)
    assert time.monotonic() - started < 2.0, "stop() must respect its timeout"
    spool.close()

    broker.start()
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    spool2 = Spool(path, 10_000)
    assert len(spool2) == 50
    sink_factory(broker.port, spool2)
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 50, 10)
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(50)]
    assert wait_until(lambda: len(spool2) == 0, 5)


def test_backlog_survives_kill_9_of_the_daemon_during_an_outage(broker, sink_factory, mqtt_collector, tmp_path):
    path = tmp_path / "spool.sqlite3"
    broker.kill()
    child = run_child(broker.port, path, 40)  # queues 40 events with the broker down
    child.send_signal(signal.SIGKILL)
    child.wait(5)

    broker.start()
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    spool = Spool(path, 10_000)
    assert len(spool) == 40
    sink_factory(broker.port, spool)
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 40, 10)
    assert [json.loads(m.payload)["id"] for m in collector.on(f"{P}/events")] == [f"child-{i:05d}" for i in range(40)]


def test_spool_bound_drops_oldest_during_outage(broker, sink_factory, mqtt_collector, tcp_proxy, tmp_path):
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    proxy = tcp_proxy(broker.port)
    proxy.block()  # the broker is unreachable for the sink
    spool = Spool(tmp_path / "spool.sqlite3", 10)
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(proxy.port, spool)
        for i in range(25):
            sink.publish_event(event(i))
    drops = [e for e in logs if e["event"].startswith("spool full")]
    assert sum(e["dropped"] for e in drops) == 15
    assert not sink.connected
    proxy.unblock()
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 10, 10)
    time.sleep(0.2)
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(15, 25)]


def test_unwritable_spool_degrades_to_memory_and_still_delivers(broker, sink_factory, mqtt_collector, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    with structlog.testing.capture_logs() as logs:
        spool = Spool(blocker / "state" / "spool.sqlite3", 100)
        sink = sink_factory(broker.port, spool)
        for i in range(5):
            sink.publish_event(event(i))
        assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 5, 10)
    assert not spool.durable
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(5)]
    assert len([e for e in logs if e["log_level"] == "error"]) == 1


# -- Home Assistant discovery ----------------------------------------------------------------

FAULTS = {"cam1": ["frozen", "signal_lost"], "cam2": ["blurred"]}


def test_discovery_configs(broker, sink_factory):
    sink = sink_factory(broker.port)
    sink.set_cameras([camera("cam1", "Front door"), camera("cam2")], FAULTS)
    wait_connected(sink)
    want = {
        f"homeassistant/binary_sensor/{P}/cam1_frozen/config",
        f"homeassistant/binary_sensor/{P}/cam1_signal_lost/config",
        f"homeassistant/binary_sensor/{P}/cam2_blurred/config",
    }
    snap = snapshot_when(broker, "homeassistant/#", lambda s: set(s) == want)
    cfg = json.loads(snap[f"homeassistant/binary_sensor/{P}/cam1_frozen/config"])
    assert cfg["device_class"] == "problem"
    assert cfg["unique_id"] == f"{P}_cam1_frozen"
    assert cfg["state_topic"] == f"{P}/cam1/frozen"
    assert (cfg["payload_on"], cfg["payload_off"]) == ("ON", "OFF")
    assert cfg["availability"] == [{"topic": f"{P}/available", "payload_available": "online", "payload_not_available": "offline"}]
    assert cfg["name"]
    assert cfg["device"]["name"] == "Front door"
    other = json.loads(snap[f"homeassistant/binary_sensor/{P}/cam1_signal_lost/config"])
    assert other["device"] == cfg["device"], "one device per camera"
    cam2 = json.loads(snap[f"homeassistant/binary_sensor/{P}/cam2_blurred/config"])
    assert cam2["device"]["identifiers"] != cfg["device"]["identifiers"]
    assert cam2["device"]["name"] == "cam2"


def test_node_id_defaults_to_prefix_and_discovery_can_be_disabled(broker, sink_factory):
    cfg = make_config(broker.port, topic_prefix="site/a", discovery=DiscoveryConfig(prefix="ha"))
    sink = sink_factory(broker.port, config=cfg)
    sink.set_cameras([camera("cam1")], {"cam1": ["frozen"]})
    wait_connected(sink)
    assert wait_until(lambda: "ha/binary_sensor/site_a/cam1_frozen/config" in retained_snapshot(broker.host, broker.port, "ha/#"), 5)
    cfg = make_config(broker.port, topic_prefix="other", discovery=DiscoveryConfig(enabled=False))
    sink2 = sink_factory(broker.port, config=cfg)
    sink2.set_cameras([camera("cam9")], {"cam9": ["frozen"]})
    wait_connected(sink2)
    time.sleep(0.2)
    assert not any("cam9" in t for t in retained_snapshot(broker.host, broker.port, "ha/#"))


def test_discovery_resent_on_home_assistant_online_and_garbage_ignored(broker, sink_factory, mqtt_collector):
    collector = mqtt_collector(broker.host, broker.port, ["homeassistant/binary_sensor/#", f"{P}/events"])
    sink = sink_factory(broker.port)
    sink.set_cameras([camera("cam1"), camera("cam2")], FAULTS)
    config_topic = f"homeassistant/binary_sensor/{P}/cam2_blurred/config"
    assert collector.wait_for(lambda c: len(c.on(config_topic)) >= 1, 10)
    with structlog.testing.capture_logs() as logs:
        for garbage in (b"\xff\xfe\x00", b"", b"ONLINE?", b"x" * 100_000, b'{"state": "online"}'):
            collector.publish("homeassistant/status", garbage)
        collector.publish("homeassistant/status", "offline")
        assert wait_until(lambda: any(e["event"] == "home assistant went offline" for e in logs), 5), logs
        assert len(collector.on(config_topic)) == 1, ("garbage must not trigger a re-send", collector.on(config_topic), logs)
        collector.publish("homeassistant/status", "online")
        assert collector.wait_for(lambda c: len(c.on(config_topic)) >= 2, 5)
        sink.publish_event(event(1))  # the sink still works
        assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) == 1, 5)
    ignored = [e for e in logs if "ignored" in e["event"]]
    assert len(ignored) == 5 and all(e["log_level"] in ("warning", "debug") for e in ignored), logs
    assert not [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e], logs


def test_removed_camera_has_its_retained_topics_cleared(broker, sink_factory):
    sink = sink_factory(broker.port)
    sink.set_cameras([camera("cam1"), camera("cam2")], FAULTS)
    wait_connected(sink)
    sink.publish_status(status("cam1", {"frozen"}, faults=FAULTS["cam1"]))
    sink.publish_status(status("cam2", {"blurred"}, faults=FAULTS["cam2"]))
    assert wait_until(lambda: f"{P}/cam2/blurred" in retained_snapshot(broker.host, broker.port), 5)

    sink.set_cameras([camera("cam1")], {"cam1": FAULTS["cam1"]})
    snap = snapshot_when(broker, "#", lambda s: not any("cam2" in t for t in s))
    assert snap[f"{P}/cam1/frozen"] == b"ON"
    assert f"homeassistant/binary_sensor/{P}/cam1_frozen/config" in snap
    sink.publish_status(status("cam2", {"blurred"}, faults=FAULTS["cam2"]))  # late status of a removed camera
    time.sleep(0.3)
    assert not any("cam2" in t for t in retained_snapshot(broker.host, broker.port))

    # The removal is remembered across calls, and a camera can come back.
    sink.set_cameras([camera("cam1"), camera("cam2")], FAULTS)
    assert wait_until(lambda: f"{P}/cam2/blurred" in retained_snapshot(broker.host, broker.port), 5)


# -- logging -----------------------------------------------------------------------------------


def test_one_log_line_per_outage_not_per_retry_and_no_password(broker, sink_factory):
    secret = "s3cr3t-pa55"
    broker.kill()
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(broker.port, config=make_config(broker.port, username="sw", password=secret),
                            reconnect_min_delay=0.02, reconnect_max_delay=0.05)
        time.sleep(1.0)  # ~20+ failed attempts
        broker.start()
        wait_connected(sink)
        broker.kill()
        assert wait_until(lambda: not sink.connected, 5)
        time.sleep(1.0)
        broker.start()
        # The "connected" line comes right after the flag is set: wait for the line itself.
        assert wait_until(lambda: sum(e["event"] == "mqtt connected" for e in logs) == 2, 10)
    levels = [(e["log_level"], e["event"]) for e in logs if e["log_level"] != "debug"]
    assert [e for _, e in levels if "unreachable" in e] == ["mqtt broker unreachable; retrying in the background"]
    assert len([e for _, e in levels if e.startswith("mqtt connected")]) == 2
    assert len([e for _, e in levels if e.startswith("mqtt disconnected")]) == 1
    assert not [lvl for lvl, _ in levels if lvl in ("error", "critical")]
    assert secret not in repr(logs)


# -- refused by the broker -----------------------------------------------------------------------

ACL_DENY_EVENTS = """\
topic read streamwatch/events
topic readwrite streamwatch/available
topic readwrite streamwatch/+/+
topic readwrite homeassistant/#
"""


def test_events_refused_by_broker_acl_are_kept_and_retried(broker_factory, sink_factory, mqtt_collector):
    """An ACL that denies the events topic (MQTT 5 PUBACK "Not authorized") must not lose them."""
    broker = broker_factory(start=False, extra_conf="acl_file {dir}/acl\n")
    acl = broker.workdir / "acl"
    acl.write_text(ACL_DENY_EVENTS)
    broker.start()
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(broker.port)
        wait_connected(sink)
        for i in range(3):
            sink.publish_event(event(i))
        time.sleep(1.0)
        assert collector.on(f"{P}/events") == []
        assert len(sink.spool) == 3
        acl.write_text(ACL_DENY_EVENTS.replace("topic read streamwatch/events", "topic readwrite streamwatch/events"))
        broker.reload()  # mosquitto reloads its ACL file
        assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 3, 10)
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(3)]
    assert wait_until(lambda: len(sink.spool) == 0, 5)
    refused = [e for e in logs if "refused an event" in e["event"]]
    assert len(refused) == 1 and refused[0]["log_level"] == "error"



def test_refused_events_are_retried_one_at_a_time_and_stay_in_order(broker_factory, sink_factory, mqtt_collector):
    """After a refusal only the oldest event is re-sent until the broker takes one: a full window
    re-sent at once could meet an ACL fixed between two of its events and let later events
    through before earlier ones (seen in CI: ev-00001 delivered before ev-00000)."""
    broker = broker_factory(start=False, extra_conf="acl_file {dir}/acl\nlog_type debug\n")
    acl = broker.workdir / "acl"
    acl.write_text(ACL_DENY_EVENTS)
    broker.start()
    collector = mqtt_collector(broker.host, broker.port, [f"{P}/events"])
    sink = sink_factory(broker.port)
    wait_connected(sink)
    for i in range(5):
        sink.publish_event(event(i))

    def denied() -> int:  # mosquitto's debug log has one "Denied PUBLISH" line per refused event
        return sum("Denied PUBLISH" in line and f"'{P}/events'" in line for line in broker.log_tail(100_000).splitlines())

    assert wait_until(lambda: denied() >= 1, 5)
    time.sleep(4.5)  # retries 1 s and 3 s after the first refusal (backoff 1, 2, 4 s)
    # Up to five in the first window, then one per retry; whole windows again would be >= 15.
    assert 3 <= denied() <= 8, broker.log_tail(60)
    acl.write_text(ACL_DENY_EVENTS.replace("topic read streamwatch/events", "topic readwrite streamwatch/events"))
    broker.reload()
    assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) >= 5, 15)
    assert event_ids(collector) == [f"ev-{i:05d}" for i in range(5)]
    assert wait_until(lambda: len(sink.spool) == 0, 5)

# -- TLS and passwords ---------------------------------------------------------------------------


@pytest.fixture
def tls_broker(broker_factory, tmp_path):
    """A broker with only a TLS listener that requires a client certificate and a password."""
    from tests.support.broker import TLS_PASSWORD_CONF, make_password_file, make_tls_files

    tls = make_tls_files(tmp_path / "pki")
    passwd = make_password_file(tmp_path / "passwd", {"streamwatch": "daemon-pw", "reader": "reader-pw"})
    conf = (
        TLS_PASSWORD_CONF.replace("{ca}", str(tls.ca))
        .replace("{cert}", str(tls.server_cert))
        .replace("{key}", str(tls.server_key))
        .replace("{passwd}", str(passwd))
    )
    return broker_factory(conf), tls


def test_tls_with_client_certificate_and_password_file(tls_broker, sink_factory, mqtt_collector, tmp_path):
    from streamwatch.config import TLSConfig

    broker, tls = tls_broker
    collector = mqtt_collector("localhost", broker.port, [f"{P}/#"], username="reader", password="reader-pw", tls=tls)
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text("daemon-pw\n")
    tls_cfg = TLSConfig(enabled=True, ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key)
    cfg = make_config(broker.port, username="streamwatch", password_file=pw_file, tls=tls_cfg)
    cfg.host = "localhost"  # the certificate's name; verified
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(broker.port, config=cfg)
        wait_connected(sink)
        sink.publish_status(status("cam1", {"blurred"}))
        sink.publish_event(event(1))
        assert collector.wait_for(lambda c: len(c.on(f"{P}/events")) == 1 and c.last(f"{P}/cam1/blurred") is not None, 10)
    assert collector.last(f"{P}/cam1/blurred").text == "ON"
    assert "daemon-pw" not in repr(logs)


def test_wrong_password_is_logged_once_and_nothing_is_lost(tls_broker, sink_factory, tmp_path):
    from streamwatch.config import TLSConfig

    broker, tls = tls_broker
    tls_cfg = TLSConfig(enabled=True, ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key)
    cfg = make_config(broker.port, username="streamwatch", password="wrong-pw", tls=tls_cfg)
    cfg.host = "localhost"
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(broker.port, config=cfg, reconnect_min_delay=0.02, reconnect_max_delay=0.05)
        sink.publish_event(event(1))
        time.sleep(1.0)  # many refused attempts
    assert not sink.connected and len(sink.spool) == 1
    refused = [e for e in logs if "refused the connection" in e["event"]]
    assert len(refused) == 1 and refused[0]["log_level"] == "error"
    assert "wrong-pw" not in repr(logs)


def test_untrusted_server_certificate_is_reported_once(tls_broker, sink_factory, tmp_path):
    from streamwatch.config import TLSConfig
    from tests.support.broker import make_tls_files

    broker, _ = tls_broker
    other = make_tls_files(tmp_path / "other-pki")  # a CA that did not sign the server's certificate
    cfg = make_config(broker.port, username="streamwatch", password="daemon-pw",
                      tls=TLSConfig(enabled=True, ca_file=other.ca, cert_file=other.client_cert, key_file=other.client_key))
    cfg.host = "localhost"
    with structlog.testing.capture_logs() as logs:
        sink = sink_factory(broker.port, config=cfg, reconnect_min_delay=0.02, reconnect_max_delay=0.05)
        time.sleep(0.8)
    assert not sink.connected
    unreachable = [e for e in logs if "unreachable" in e["event"]]
    assert len(unreachable) == 1 and "CERTIFICATE_VERIFY_FAILED" in unreachable[0]["error"]


def test_unusable_tls_files_fail_start_with_a_clear_error(tmp_path, sink_factory):
    from streamwatch.config import TLSConfig

    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    sink = sink_factory(1883, config=make_config(1883, tls=TLSConfig(enabled=True, ca_file=bad)), start=False)
    with pytest.raises(RuntimeError, match="mqtt.tls"):
        sink.start()
    sink.stop()  # harmless after a failed start
