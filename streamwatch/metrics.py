"""Prometheus metrics (``metrics_port``), documented in docs/metrics.md.

Counters and histograms are updated by the stages that own the events; per-camera
gauges (sample age, reconnects, fault states) are read from the readers and the
monitor at scrape time, so the hot path never touches them. Each daemon has its
own registry: nothing is global.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.samples = Counter(
            "streamwatch_samples", "Samples analysed per camera", ["camera"], registry=self.registry
        )
        self.dropped = Counter(
            "streamwatch_samples_dropped", "Samples dropped because the model fell behind", registry=self.registry
        )
        self.events = Counter(
            "streamwatch_fault_transitions", "Fault transitions", ["camera", "fault", "state"], registry=self.registry
        )
        self.model_seconds = Histogram(
            "streamwatch_model_batch_seconds",
            "Time to preprocess and classify one batch",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "streamwatch_batch_size", "Samples per classifier batch", buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.decision_latency = Histogram(
            "streamwatch_capture_to_decision_seconds",
            "From frame capture to the fault decision on it",
            buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self._server = None

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, port: int, addr: str = "0.0.0.0", certfile: str | None = None, keyfile: str | None = None,
              client_cafile: str | None = None) -> None:
        """Serve ``/metrics`` on addr:port; HTTPS with ``certfile``/``keyfile``, and only to
        clients with a certificate signed by ``client_cafile`` when that is given."""
        self._server, _thread = start_http_server(
            port, addr=addr, registry=self.registry, certfile=certfile, keyfile=keyfile,
            client_cafile=client_cafile, client_auth_required=client_cafile is not None,
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class DaemonCollector(Collector):
    """Gauges read at scrape time from callables the daemon provides."""

    def __init__(
        self,
        reader_status: Callable[[], dict[str, object]],
        fault_states: Callable[[], dict[str, dict[str, bool]]],
        queue_depth: Callable[[], int],
        model_version: Callable[[], str | None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._reader_status = reader_status
        self._fault_states = fault_states
        self._queue_depth = queue_depth
        self._model_version = model_version
        self._clock = clock

    def collect(self) -> Iterable:
        now = self._clock()
        age = GaugeMetricFamily("streamwatch_frame_age_seconds", "Seconds since the newest frame", labels=["camera"])
        connected = GaugeMetricFamily("streamwatch_camera_connected", "1 while the reader delivers", labels=["camera"])
        reconnects = GaugeMetricFamily("streamwatch_camera_reconnects", "Reconnect attempts since start", labels=["camera"])
        frames = GaugeMetricFamily("streamwatch_camera_frames", "Frames decoded since start", labels=["camera"])
        for camera, status in self._reader_status().items():
            last = getattr(status, "last_frame_mono", None)
            if last is not None:
                age.add_metric([camera], now - last)
            connected.add_metric([camera], float(bool(getattr(status, "connected", False))))
            reconnects.add_metric([camera], float(getattr(status, "reconnects", 0)))
            frames.add_metric([camera], float(getattr(status, "frames", 0)))
        yield from (age, connected, reconnects, frames)
        faults = GaugeMetricFamily("streamwatch_fault_active", "1 while a fault is raised", labels=["camera", "fault"])
        for camera, states in self._fault_states().items():
            for fault, active in states.items():
                faults.add_metric([camera, fault], float(active))
        yield faults
        yield GaugeMetricFamily("streamwatch_queue_depth", "Samples waiting for the classifier", value=self._queue_depth())
        info = InfoMetricFamily("streamwatch_model", "Classifier in use")
        info.add_metric([], {"version": self._model_version() or "none"})
        yield info


class PatrolCollector(Collector):
    """Patrol mode gauges (streamwatch/patrol.py), read at scrape time from ``patrol.snapshot()``.

    ``snapshot()`` returns ``{"target": s, "cycle": s | None, "busy": s | None, "rounds": n,
    "cameras": n, "workers": n, "visits": {camera: (last visit end monotonic | None, ok, visits,
    failed visits)}}``.
    """

    def __init__(self, snapshot: Callable[[], dict], clock: Callable[[], float] = time.monotonic):
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterable:
        snap = self._snapshot()
        now = self._clock()
        yield GaugeMetricFamily("streamwatch_patrol_cycle_target_seconds", "Configured patrol cycle",
                                value=snap["target"])
        cycle = GaugeMetricFamily("streamwatch_patrol_cycle_seconds",
                                  "Achieved patrol cycle: start to start of the last two rounds")
        if snap.get("cycle") is not None:
            cycle.add_metric([], snap["cycle"])
        yield cycle
        busy = GaugeMetricFamily("streamwatch_patrol_round_busy_seconds",
                                 "Time the last completed round needed to visit every camera")
        if snap.get("busy") is not None:
            busy.add_metric([], snap["busy"])
        yield busy
        yield GaugeMetricFamily("streamwatch_patrol_rounds", "Completed patrol rounds", value=snap["rounds"])
        yield GaugeMetricFamily("streamwatch_patrol_cameras", "Cameras on the patrol", value=snap["cameras"])
        yield GaugeMetricFamily("streamwatch_patrol_workers", "Patrol workers", value=snap["workers"])
        age = GaugeMetricFamily("streamwatch_patrol_visit_age_seconds", "Seconds since the camera's last visit ended",
                                labels=["camera"])
        ok = GaugeMetricFamily("streamwatch_patrol_visit_ok", "1 if the last visit got frames", labels=["camera"])
        visits = GaugeMetricFamily("streamwatch_patrol_visits", "Visits since start", labels=["camera"])
        failed = GaugeMetricFamily("streamwatch_patrol_visits_failed", "Visits without frames since start",
                                   labels=["camera"])
        for camera, (last, good, n, bad) in snap["visits"].items():
            if last is not None:
                age.add_metric([camera], now - last)
                ok.add_metric([camera], float(good))
            visits.add_metric([camera], float(n))
            failed.add_metric([camera], float(bad))
        yield from (age, ok, visits, failed)
