"""MQTT alert sink: retained camera state, an ordered at-least-once event stream, and
Home Assistant discovery, with paho-mqtt 2.x. Topics and payloads: docs/mqtt.md.

Two kinds of traffic, two delivery rules:

* **Latest-wins state** (``<p>/available``, ``<p>/<camera>/status``, ``<p>/<camera>/<fault>``,
  discovery configs, and the empty "tombstones" that clear a removed camera). Kept in
  memory and published retained, as QoS 0, whenever it changes while connected, and again
  in full on every (re)connect. QoS 0 on purpose: paho replays unacknowledged QoS 1
  messages *after* ``on_connect`` on a reconnect, so a stale QoS 1 state message queued
  during an outage would overwrite the fresh state we republish; a QoS 0 message is
  never replayed, and the republish on connect makes up for anything lost with a dropped
  connection. ``online`` and ``offline`` are QoS 1.
* **Events** (``<p>/events``). ``publish_event`` only appends the payload to the durable
  :class:`~streamwatch.sinks.spool.Spool` and returns. The delivery thread sends spooled
  events in order while connected, up to ``max_inflight`` unacknowledged at a time, and
  deletes each from the spool only when the broker's PUBACK arrives (``on_publish``). On a
  reconnect paho re-sends the unacknowledged ones first (in order, with the DUP flag) and
  nothing newer is sent until those are acknowledged, so order holds across outages; a
  crash or stop leaves unacknowledged events in the spool for the next run. Guarantee:
  at least once, in order; a duplicate (same ``id``) is possible only for an event whose
  PUBACK was lost with the connection. An event the broker refuses (MQTT 5 reason code,
  e.g. an ACL) stays in the spool and is re-sent with backoff, alone, until the broker
  takes one again: a fixed ACL then lets the events through in their order.

Never blocks the caller on the network; never raises from paho callbacks; logs one line
per connect and per disconnect, and one per outage for failed reconnects (not per retry).
"""

from __future__ import annotations

import json
import queue
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from streamwatch import FAULT_NAMES, __version__
from streamwatch.config import CameraConfig, MQTTConfig
from streamwatch.events import CameraStatus, FaultEvent
from streamwatch.sinks.spool import Spool

log = structlog.get_logger(__name__)

#: Human-readable entity names for Home Assistant; unknown faults fall back to the slug.
FAULT_TITLES: dict[str, str] = {
    "frozen": "Frozen picture",
    "overexposed": "Overexposed",
    "blurred": "Blurred",
    "color_cast": "Colour cast",
    "gaussian_noise": "Noise",
    "salt_pepper": "Salt-and-pepper noise",
    "monochrome": "Monochrome",
    "signal_lost": "Signal lost",
}

ONLINE = "online"
OFFLINE = "offline"
_MAX_GARBAGE_LOG_PER_MINUTE = 5


def _fault_title(fault: str) -> str:
    return FAULT_TITLES.get(fault, fault.replace("_", " ").capitalize())


class MQTTSink:
    """The :class:`~streamwatch.sinks.base.AlertSink` that publishes to an MQTT broker."""

    def __init__(
        self,
        config: MQTTConfig,
        spool: Spool,
        *,
        node_id: str | None = None,
        reconnect_min_delay: float = 1.0,
        reconnect_max_delay: float = 30.0,
        max_inflight: int = 20,
        protocol: int = mqtt.MQTTv5,
        stall_timeout: float = 60.0,
        availability_topic: str | None = None,
    ):
        if protocol not in (mqtt.MQTTv311, mqtt.MQTTv5):
            raise ValueError("protocol must be paho.mqtt.client.MQTTv311 or MQTTv5")
        self.config = config
        self.spool = spool
        self.node_id = node_id or config.topic_prefix.replace("/", "_")
        self.prefix = config.topic_prefix
        # Sharded replicas each announce their own availability (``<p>/available/<index>``) so one
        # replica's Last Will does not mark the others' cameras unavailable.
        self.availability_topic = availability_topic or f"{self.prefix}/available"
        self.events_topic = f"{self.prefix}/events"
        self.ha_status_topic = f"{config.discovery.prefix}/status"
        self.reconnect_min_delay = reconnect_min_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.max_inflight = max(1, int(max_inflight))
        self.protocol = protocol
        self.stall_timeout = stall_timeout

        self._client: mqtt.Client | None = None
        self._started = False
        self._stopped = False
        self._stopping = False
        # Connection state. Written by paho's thread without our lock (see _on_disconnect).
        self._connected = False
        self._generation = 0  # successful connects so far
        self._connected_at = 0.0
        self._unreachable_logged = False  # one line per outage for failed attempts
        self._connack_refused_logged = False  # one line per outage for refused CONNECTs
        self._garbage_window = (0.0, 0)  # (window start, lines logged) for unexpected messages

        # Latest-wins state, guarded by _lock (taken in on_connect/on_message, never in
        # on_publish/on_disconnect, which paho calls while holding its own locks).
        self._lock = threading.RLock()
        self._cameras: dict[str, tuple[CameraConfig, tuple[str, ...]]] | None = None
        self._status: dict[str, CameraStatus] = {}
        self._discovery: dict[str, str] = {}  # topic -> JSON config currently wanted
        self._tombstones: set[str] = set()  # retained topics to keep empty
        self._removed: set[str] = set()  # camera ids whose topics are tombstoned

        # Event delivery (state owned by the delivery thread, except the queue and events).
        self._acks: queue.SimpleQueue[tuple[int, ReasonCode | None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._idle = threading.Event()
        self._inflight: dict[int, tuple[int, int, float]] = {}  # mid -> (spool key, generation, sent at)
        self._last_sent_key = 0
        self._retry_from: int | None = None  # spool key to resend from after a refused PUBLISH
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._refused_logged = False
        # After a refused PUBLISH events go one at a time until one is accepted: with a full window
        # in flight, an ACL fixed mid-window would let later events through before the refused one.
        self._probing = False
        self._delivery: threading.Thread | None = None

    # -- read-only state (health checks, metrics) ----------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected

    @property
    def pending_events(self) -> int:
        """Events not yet acknowledged by the broker (spooled + in flight)."""
        return len(self.spool)

    # -- AlertSink ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start delivering. Raises only for unusable settings."""
        if self._started:
            return
        client = self._make_client()  # raises RuntimeError for unreadable password/TLS files
        self._client = client
        self._started = True
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = True
        client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive, **kwargs)
        client.loop_start()
        self._delivery = threading.Thread(target=self._deliver_loop, name="mqtt-delivery", daemon=True)
        self._delivery.start()
        log.info(
            "mqtt sink started",
            host=self.config.host,
            port=self.config.port,
            tls=self.config.tls.enabled,
            client_id=self.config.client_id,
            topic_prefix=self.prefix,
            spooled_events=len(self.spool),
        )

    def set_cameras(self, cameras: list[CameraConfig], faults: dict[str, list[str]]) -> None:
        wanted = {c.id: (c, tuple(faults.get(c.id, ()))) for c in cameras}
        with self._lock:
            previous = self._cameras or {}
            new_tombs: set[str] = set()
            for cam_id in previous.keys() - wanted.keys():
                new_tombs |= self._camera_topics(cam_id, set(previous[cam_id][1]))
                self._removed.add(cam_id)
                self._status.pop(cam_id, None)
            for cam_id, (_, cam_faults) in wanted.items():
                if cam_id in previous:
                    # Faults no longer monitored on a kept camera: clear their topics too.
                    for fault in set(previous[cam_id][1]) - set(cam_faults):
                        new_tombs.add(f"{self.prefix}/{cam_id}/{fault}")
                        new_tombs.add(self._discovery_topic(cam_id, fault))
            discovery = self._discovery_configs(wanted) if self.config.discovery.enabled else {}
            if not self.config.discovery.enabled:
                new_tombs = {t for t in new_tombs if not t.startswith(f"{self.config.discovery.prefix}/")}
            # A camera that is (back) in the set gets its topics back.
            readded = [cam_id for cam_id in wanted if cam_id in self._removed]
            live_topics = set(discovery)
            for cam_id, (_, cam_faults) in wanted.items():
                self._removed.discard(cam_id)
                live_topics.add(f"{self.prefix}/{cam_id}/status")
                live_topics.update(f"{self.prefix}/{cam_id}/{f}" for f in cam_faults)
            new_tombs -= live_topics
            self._tombstones -= live_topics
            self._tombstones |= new_tombs
            changed = {t: p for t, p in discovery.items() if self._discovery.get(t) != p}
            added = [cam_id for cam_id in wanted if cam_id not in previous]
            self._cameras = wanted
            self._discovery = discovery
            if self._connected:
                for topic in sorted(new_tombs):
                    self._publish(topic, b"", qos=0, retain=True)
                for topic, payload in changed.items():
                    self._publish(topic, payload, qos=0, retain=True)
                for cam_id in readded:  # its status was kept back while it was removed
                    if cam_id in self._status:
                        self._publish_camera_state(self._status[cam_id])
        if previous.keys() - wanted.keys() or added:
            log.info(
                "mqtt cameras announced",
                added=sorted(added),
                removed=sorted(previous.keys() - wanted.keys()),
                cameras=len(wanted),
            )

    def publish_event(self, event: FaultEvent) -> None:
        self.spool.put(event.to_payload())
        self._idle.clear()
        self._wake.set()

    def publish_status(self, status: CameraStatus) -> None:
        with self._lock:
            self._status[status.camera] = status
            if status.camera in self._removed:
                log.debug("status of a removed camera kept back", camera=status.camera)
                return
            if self._connected:
                self._publish_camera_state(status)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, flush events for up to ``timeout`` s, stop threads. Idempotent.

        Does not close the spool (the daemon owns it); what was not acknowledged stays in it.
        """
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping = True
        deadline = time.monotonic() + max(0.0, timeout)
        client = self._client
        assert client is not None
        offline: mqtt.MQTTMessageInfo | None = None
        if self._connected:
            try:
                offline = client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            except (ValueError, RuntimeError):  # pragma: no cover - topic is validated
                offline = None
        # Flush: the delivery thread keeps sending while connected; wait for it to run dry.
        while self._connected and time.monotonic() < deadline - 0.1:
            if self._idle.wait(0.02) and len(self.spool) == 0 and not self._inflight:
                break
        self._halt.set()
        self._wake.set()
        if self._delivery is not None:
            self._delivery.join(max(0.1, deadline - time.monotonic()))
        offline_sent = False
        if offline is not None:
            try:
                offline.wait_for_publish(max(0.05, deadline - time.monotonic()))
                offline_sent = offline.is_published()
            except (RuntimeError, ValueError):
                offline_sent = False
        try:
            if not offline_sent and self.protocol == mqtt.MQTTv5 and self._connected:
                # Let the broker publish our Last Will ("offline") since we could not.
                client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
            else:
                client.disconnect()
        except Exception:  # noqa: BLE001 - stopping must not fail
            pass
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-loop-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.2, deadline - time.monotonic()))
        self._drain_acks()  # PUBACKs that arrived after the delivery thread stopped
        self._connected = False
        log.info(
            "mqtt sink stopped",
            offline_published=offline_sent,
            undelivered_events=len(self.spool),
        )

    # -- client set-up -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = True
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=self.protocol,
            reconnect_on_failure=True,
            **kwargs,
        )
        client.suppress_exceptions = True
        client.reconnect_delay_set(self.reconnect_min_delay, self.reconnect_max_delay)
        # Head-room for online/offline, so paho never holds an event back as "queued".
        client.max_inflight_messages_set(self.max_inflight + 10)
        client.max_queued_messages_set(0)
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        if cfg.username is not None:
            try:
                password = cfg.resolve_password()
            except (OSError, ValueError) as exc:  # unreadable, not UTF-8, empty
                source = "password_file" if cfg.password_file else "password_env" if cfg.password_env else "password"
                raise RuntimeError(f"cannot read the MQTT password from mqtt.{source}: {type(exc).__name__}") from None
            if password is None and cfg.password_env is not None:
                log.warning("mqtt password environment variable is not set", variable=cfg.password_env)
            client.username_pw_set(cfg.username, password)
        if cfg.tls.enabled:
            tls = cfg.tls
            try:
                client.tls_set(
                    ca_certs=str(tls.ca_file) if tls.ca_file else None,
                    certfile=str(tls.cert_file) if tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise RuntimeError(f"cannot load the MQTT TLS files (mqtt.tls): {exc}") from None
            client.tls_insecure_set(tls.insecure)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- paho callbacks (paho's network thread) --------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        try:
            if reason_code.is_failure:
                if not self._connack_refused_logged:
                    self._connack_refused_logged = True
                    log.error(
                        "mqtt broker refused the connection; retrying in the background",
                        host=self.config.host,
                        port=self.config.port,
                        reason=str(reason_code),
                        username=self.config.username,
                    )
                return
            with self._lock:
                self._connected = True
                self._generation += 1
                self._connected_at = time.monotonic()
                self._unreachable_logged = False
                self._connack_refused_logged = False
                if self.config.discovery.enabled:
                    # Subscribe before publishing discovery: the broker handles one client's packets in
                    # order, so whoever sees our discovery can rely on a Home Assistant birth message
                    # sent after it reaching us (it used to be lost when it beat the SUBSCRIBE).
                    client.subscribe(self.ha_status_topic, qos=1)
                self._publish(self.availability_topic, ONLINE, qos=1, retain=True)
                for topic in sorted(self._tombstones):
                    self._publish(topic, b"", qos=0, retain=True)
                for topic, payload in self._discovery.items():
                    self._publish(topic, payload, qos=0, retain=True)
                for cam_id, status in self._status.items():
                    if cam_id not in self._removed:
                        self._publish_camera_state(status)
            log.info(
                "mqtt connected",
                host=self.config.host,
                port=self.config.port,
                tls=self.config.tls.enabled,
                session=self._generation,
                spooled_events=len(self.spool),
            )
            self._wake.set()
        except Exception:  # noqa: BLE001 - never let a bug kill paho's thread
            log.exception("mqtt on_connect failed")

    def _on_connect_fail(self, client, userdata) -> None:  # noqa: ANN001
        # Called inside paho's ``except OSError`` block, so the error is still at hand.
        error = sys.exc_info()[1]
        if not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning(
                "mqtt broker unreachable; retrying in the background",
                host=self.config.host,
                port=self.config.port,
                error=f"{type(error).__name__}: {error}" if error else None,
                retry_max_delay=self.reconnect_max_delay,
            )
        else:
            log.debug("mqtt connect attempt failed", error=str(error) if error else None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        # No lock here: paho may hold its message lock while calling this.
        was_connected = self._connected
        self._connected = False
        self._wake.set()
        if not was_connected:
            return  # a failed attempt during an outage: already logged once
        reason = str(reason_code)
        if not flags.is_disconnect_packet_from_server and reason == "Unspecified error":
            reason = "connection lost"  # paho's v5 translation of a dropped socket
        if self._stopping:
            log.info("mqtt disconnected", reason=reason)
            return
        self._unreachable_logged = True  # the line below covers this outage's failed retries
        log.warning(
            "mqtt disconnected; reconnecting in the background",
            reason=reason,
            by_broker=flags.is_disconnect_packet_from_server,
            undelivered_events=len(self.spool),
        )

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        # Called with paho's message lock held: only hand over to the delivery thread.
        self._acks.put((mid, reason_code))
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        try:
            topic = message.topic
            if topic != self.ha_status_topic:
                self._log_unexpected("message on an unexpected topic ignored", topic=topic)
                return
            try:
                text = bytes(message.payload).decode("utf-8").strip()
            except UnicodeDecodeError:
                self._log_unexpected("non-UTF-8 Home Assistant status ignored", topic=topic, size=len(message.payload))
                return
            if text == ONLINE:
                with self._lock:
                    if not self._connected:
                        return
                    for t, payload in self._discovery.items():
                        self._publish(t, payload, qos=0, retain=True)
                    # Home Assistant may have missed state published while it was down.
                    for cam_id, status in self._status.items():
                        if cam_id not in self._removed:
                            self._publish_camera_state(status)
                log.info("home assistant came online; discovery re-sent", configs=len(self._discovery))
            elif text == OFFLINE:
                log.debug("home assistant went offline")
            else:
                self._log_unexpected("unexpected Home Assistant status ignored", topic=topic, payload=text[:64])
        except Exception:  # noqa: BLE001 - a message must never break the sink
            log.warning("mqtt message could not be handled; ignored", exc_info=True)

    def _log_unexpected(self, event: str, **fields: Any) -> None:
        """Warn about garbage at most a few times a minute; the rest at debug level."""
        now = time.monotonic()
        start, count = self._garbage_window
        if now - start > 60:
            start, count = now, 0
        if count < _MAX_GARBAGE_LOG_PER_MINUTE:
            log.warning(event, **fields)
        else:
            log.debug(event, **fields)
        self._garbage_window = (start, count + 1)

    # -- latest-wins state ----------------------------------------------------------------

    def _publish(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
        assert self._client is not None
        try:
            self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # invalid topic or oversized payload: a bug, not an outage
            log.error("mqtt publish refused by client library", topic=topic, error=str(exc))

    def _publish_camera_state(self, status: CameraStatus) -> None:
        base = f"{self.prefix}/{status.camera}"
        self._publish(f"{base}/status", json.dumps(status.to_payload(), separators=(",", ":")), qos=0, retain=True)
        for fault, active in status.faults.items():
            topic = f"{base}/{fault}"
            if topic in self._tombstones:
                continue  # fault no longer monitored on this camera (see set_cameras)
            self._publish(topic, "ON" if active else "OFF", qos=0, retain=True)

    def _discovery_topic(self, camera: str, fault: str) -> str:
        return f"{self.config.discovery.prefix}/binary_sensor/{self.node_id}/{camera}_{fault}/config"

    def _camera_topics(self, camera: str, faults: Iterable[str]) -> set[str]:
        """Every retained topic a camera may have used (for clearing it)."""
        all_faults = set(FAULT_NAMES) | set(faults)
        status = self._status.get(camera)
        if status is not None:
            all_faults |= set(status.faults)
        topics = {f"{self.prefix}/{camera}/status"}
        topics |= {f"{self.prefix}/{camera}/{f}" for f in all_faults}
        if self.config.discovery.enabled:
            topics |= {self._discovery_topic(camera, f) for f in all_faults}
        return topics

    def _discovery_configs(self, cameras: dict[str, tuple[CameraConfig, tuple[str, ...]]]) -> dict[str, str]:
        out = {}
        for cam_id, (camera, faults) in cameras.items():
            device = {
                "identifiers": [f"{self.node_id}_{cam_id}"],
                "name": camera.display_name,
                "manufacturer": "streamwatch",
                "model": "Video quality diagnosis",
                "sw_version": __version__,
            }
            for fault in faults:
                unique_id = f"{self.node_id}_{cam_id}_{fault}"
                cfg = {
                    "name": _fault_title(fault),
                    "unique_id": unique_id,
                    "device_class": "problem",
                    "state_topic": f"{self.prefix}/{cam_id}/{fault}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "json_attributes_topic": f"{self.prefix}/{cam_id}/status",
                    "availability": [
                        {
                            "topic": self.availability_topic,
                            "payload_available": ONLINE,
                            "payload_not_available": OFFLINE,
                        }
                    ],
                    "qos": self.config.qos,
                    "device": device,
                    "origin": {"name": "streamwatch", "sw_version": __version__},
                }
                out[self._discovery_topic(cam_id, fault)] = json.dumps(cfg, separators=(",", ":"))
        return out

    # -- event delivery (delivery thread) ----------------------------------------------------

    def _deliver_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._drain_acks()
                if self._halt.is_set():
                    return
                if self._connected:
                    self._send_more()
                self._check_stall()
                if not self._inflight and (len(self.spool) == 0 or not self._connected):
                    self._idle.set()
            except Exception:  # noqa: BLE001 - the delivery thread must survive anything
                log.exception("mqtt event delivery failed; retrying")
                self._halt.wait(1.0)

    def _drain_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # a retained-state publish, or an event already given up on
            key = entry[0]
            if reason is not None and reason.is_failure:
                # The broker refused it (MQTT 5 reason code, e.g. not authorised): keep it and
                # send it again later, with backoff. Never dropped silently.
                self._retry_from = key if self._retry_from is None else min(self._retry_from, key)
                self._probing = True
                self._retry_delay = min(max(self._retry_delay * 2, 1.0), 60.0)
                self._retry_at = time.monotonic() + self._retry_delay
                if not self._refused_logged:
                    self._refused_logged = True
                    log.error(
                        "mqtt broker refused an event; keeping it and retrying",
                        topic=self.events_topic,
                        reason=str(reason),
                        retry_in=self._retry_delay,
                    )
                continue
            done.append(key)
        if done:
            self.spool.ack_many(done)
            if self._retry_from is None:
                self._retry_delay = 0.0
                self._refused_logged = False
                self._probing = False

    def _send_more(self) -> None:
        if self._retry_from is not None:
            if time.monotonic() < self._retry_at or self._inflight:
                return
            self._last_sent_key = self._retry_from - 1
            self._retry_from = None
        generation = self._generation
        if any(gen != generation for _, gen, _ in self._inflight.values()):
            return  # paho is re-sending the previous connection's events; keep the order
        room = (1 if self._probing else self.max_inflight) - len(self._inflight)
        if room <= 0:
            return
        assert self._client is not None
        qos = self.config.qos
        for key, payload in self.spool.peek(room, after=self._last_sent_key):
            if not self._connected or self._halt.is_set():
                return
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            try:
                info = self._client.publish(self.events_topic, data, qos=qos, retain=False)
            except ValueError as exc:
                # Cannot ever be sent (payload too large...): say so loudly, then skip it.
                log.error("event cannot be published, discarded", key=key, error=str(exc))
                self.spool.ack(key)
                self._last_sent_key = key
                continue
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0):
                # QoS>0 and not connected: paho keeps it and sends it on reconnect.
                self._inflight[info.mid] = (key, generation, time.monotonic())
                self._last_sent_key = key
            else:
                # Not taken (QoS 0 while disconnected, queue full): send again later.
                log.debug("event publish not accepted; will retry", rc=mqtt.error_string(info.rc))
                return

    def _check_stall(self) -> None:
        """Safety net: an event without PUBACK for ``stall_timeout`` while connected is re-sent."""
        if not self._inflight or not self._connected:
            return
        # Waiting only counts while connected: events queued during an outage are not stalled.
        oldest = max(min(sent for _, _, sent in self._inflight.values()), self._connected_at)
        if time.monotonic() - oldest < self.stall_timeout:
            return
        first = min(key for key, _, _ in self._inflight.values())
        log.warning(
            "mqtt broker has not acknowledged events; re-sending them",
            events=len(self._inflight),
            seconds=round(time.monotonic() - oldest, 1),
        )
        self._inflight.clear()
        self._last_sent_key = first - 1
