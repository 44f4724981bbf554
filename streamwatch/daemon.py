"""Wiring of the long-running daemon: readers -> sampler -> batcher -> monitor -> sinks.

The daemon owns every thread it starts and stops them in reverse order of the
data flow. Signals only set flags; all work happens on the main loop:
SIGTERM/SIGINT stop, SIGHUP reloads the config (an invalid new config is
logged and ignored, the old one keeps running).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from streamwatch.batcher import Batcher
from streamwatch.config import CameraConfig, Config, ConfigError, MaskRegion, load_config, mask_url
from streamwatch.metrics import DaemonCollector, Metrics
from streamwatch.model.masks import fill_regions
from streamwatch.monitor import Monitor
from streamwatch.reservoir import Reservoir
from streamwatch.sampling import Sample, Sampler
from streamwatch.sinks.base import AlertSink

log = structlog.get_logger(__name__)

#: SIGTERM must finish within 5 s (systemd's and the issue's budget); stages share it.
STOP_BUDGET = 4.5
#: Seconds between checks for a newly promoted model.
MODEL_POLL = 5.0


class StartupError(Exception):
    """The daemon cannot start (unusable state dir, model file, ...). Message is for the operator."""


class _Notifier:
    """sd_notify when run under systemd (Type=notify), a no-op otherwise."""

    def __init__(self) -> None:
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_interval = int(usec) / 2e6 if usec and usec.isdigit() else None

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)


def camera_fingerprint(config: Config, camera: CameraConfig) -> Any:
    """Everything that, when changed by a reload, means the camera must restart."""
    return (
        camera.model_dump(),
        {k: config.camera_value(camera, k) for k in
         ("sample_interval", "signal_timeout", "frozen_after", "frozen_noise_floor",
          "frozen_change_threshold", "rtsp_transport", "decode")},
        config.fault_settings(camera),
    )


#: ``decode: auto`` keeps keyframes-only decoding while the stream's keyframes are at most this
#: many sample intervals apart (in stream time), and decodes every frame otherwise.
AUTO_MAX_KEYFRAME_GAP = 1.25


def choose_decode(config: Config, camera: CameraConfig) -> tuple[str, float | None]:
    """(decoder, keyframe gap in seconds that triggers a fallback to every frame, or None).

    ``all``: OpenCV, every frame. ``keyframes``: PyAV, keyframes plus one successor each, never
    falls back (a camera sampled more often than it sends keyframes is then sampled once per
    keyframe). ``auto`` (the default): PyAV keyframes-only - about 1/10 of the CPU of decoding
    every frame (docs/performance.md) - as long as keyframes come at least once per sample
    interval (gap <= 1.25 x ``sample_interval`` of stream time); as soon as the stream shows a
    longer gap (GOP longer than the sample interval, intra refresh, "smart" codecs without
    regular keyframes) the reader decodes every frame, so the configured sample rate is always
    honoured.
    """
    mode = config.camera_value(camera, "decode")
    if mode == "all":
        return "all", None
    if mode == "keyframes":
        return "keyframes", None
    return "keyframes", AUTO_MAX_KEYFRAME_GAP * config.camera_value(camera, "sample_interval")


#: Frame-driven sampling takes a frame this share of an interval before it is due (jitter).
FRAME_DRIVEN_SLACK = 0.25


class _FrameDrivenSampler:
    """Samples a keyframe reader's frames as they arrive, at most once per ``interval``.

    With keyframes-only decoding a new picture exists only once per GOP. A sample clock that
    polls the newest frame every ``interval`` sees it, depending on the phase between the two
    clocks, up to one GOP late (measured: capture-to-decision ~2 s at GOP = interval = 2 s), so
    these readers are sampled from their ``on_frame`` callback instead: a frame is taken when it
    arrives no earlier than ``FRAME_DRIVEN_SLACK`` intervals before the next due time, and due
    times advance by ``interval`` (no drift; after a gap, from the frame). The ``Sampler`` still
    runs this camera's clock for ``signal_lost``; its samples of the camera are dropped.
    """

    def __init__(self, camera_id: str, interval: float, submit: Any, active: Any):
        self.camera_id = camera_id
        self.interval = interval
        self._submit = submit
        self._active = active  # () -> bool: False once the camera was stopped or restarted
        self._next_due: float | None = None

    def __call__(self, frame: Any) -> None:
        if not self._active(self):
            return
        t = frame.captured_mono
        if self._next_due is not None and t < self._next_due - FRAME_DRIVEN_SLACK * self.interval:
            return
        self._next_due = (t if self._next_due is None else self._next_due) + self.interval
        if self._next_due < t:
            self._next_due = t + self.interval
        self._submit(Sample(self.camera_id, frame, t))


def load_classifier(config: Config):
    """The ONNX classifier, or None when disabled. Raises StartupError if unusable."""
    if not config.model.enabled:
        return None
    from streamwatch.model.loader import load_model
    from streamwatch.model.runtime import ModelLoadError

    try:
        return load_model(config)
    except ModelLoadError as exc:
        raise StartupError(f"model: {exc}") from None


#: OpenCV's own worker threads per call. The daemon already keeps both cores busy with one
#: thread per camera plus the batcher; OpenCV splitting each resize or filter over a second
#: thread then only adds hand-over cost: fusion measurements of a 1080p frame took 9.4-10.9 ms
#: of CPU with 2 OpenCV threads against 7.2-7.5 ms with 1 (docs/performance.md).
OPENCV_THREADS = 1


def limit_opencv_threads(threads: int = OPENCV_THREADS) -> int:
    """Set OpenCV's process-wide worker count; returns the count now in effect."""
    import cv2

    cv2.setNumThreads(threads)
    return int(cv2.getNumThreads())


def prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"state_dir {path}: not writable ({exc.strerror or exc})") from None


def mask_table(config: Config) -> dict[str, tuple[MaskRegion, ...]]:
    """camera id -> its privacy-mask regions, for the cameras that have any."""
    return {camera.id: tuple(camera.masks) for camera in config.cameras if camera.masks}


class Daemon:
    def __init__(self, config_path: Path, config: Config):
        self.config_path = config_path
        self.config = config
        #: camera id -> privacy-mask regions; replaced as a whole on reload (read by the batcher)
        self._masks = mask_table(config)
        self._notifier = _Notifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._readers: dict[str, Any] = {}
        self._fingerprints: dict[str, Any] = {}
        self._frame_driven: dict[str, _FrameDrivenSampler] = {}

        prepare_state_dir(config.state_dir)
        self._opencv_threads = limit_opencv_threads()
        self.classifier = load_classifier(config)
        self._model_watcher = None
        if self.classifier is not None:
            from streamwatch.model.loader import ModelWatcher

            self._model_watcher = ModelWatcher(config, self.classifier)
        self._spool = None
        self.sinks: list[AlertSink] = []
        if config.mqtt.enabled:
            from streamwatch.sinks.mqtt import MQTTSink
            from streamwatch.sinks.spool import Spool

            self._spool = Spool(config.state_dir / "spool.sqlite3", config.spool.max_events)
            availability = None
            if config.shard.count > 1:
                availability = f"{config.mqtt.topic_prefix}/available/{config.shard.index}"
            self.sinks.append(MQTTSink(config.mqtt, self._spool, availability_topic=availability))
        version = self.classifier.version if self.classifier is not None else None
        self.metrics = Metrics()
        self.reservoir = None
        if config.reservoir.enabled:
            r = config.reservoir
            self.reservoir = Reservoir(
                r.dir, max_mb=r.max_mb, frames_per_camera=r.frames_per_camera, fault_frames=r.fault_frames,
                min_interval=r.min_interval, min_confidence=r.min_confidence,
            )
        monitor_kwargs: dict[str, Any] = {}
        monitor_cls: Any = Monitor
        if config.patrol.enabled:  # patrol mode: streamwatch/patrol.py
            from streamwatch.patrol import PatrolMonitor as monitor_cls

            monitor_kwargs = dict(raise_visits=config.patrol.raise_visits, clear_visits=config.patrol.clear_visits)
        self.monitor = monitor_cls(
            self.sinks, config.state_dir, model_version=version, metrics=self.metrics, reservoir=self.reservoir,
            model_fused=bool(getattr(self.classifier, "fused", False)),
            pending_events=[p for _, p in self._spool.peek(len(self._spool))] if self._spool is not None else (),
            **monitor_kwargs,
        )
        self.batcher = Batcher(
            self.classifier,
            self._on_result,
            batch_size=config.model.batch_size,
            max_wait=config.model.max_wait,
            metrics=self.metrics,
            preprocess_workers=config.model.preprocess_workers,
            prepare=self.classifier_picture,
        )
        self.metrics.add_collector(
            DaemonCollector(
                reader_status=lambda: {cid: r.status() for cid, r in list(self._readers.items())},
                fault_states=self.monitor.fault_states,
                queue_depth=lambda: self.batcher.queue_depth,
                model_version=lambda: self.batcher.model_version,
            )
        )
        self.sampler = Sampler(self._clock_sample, self.monitor.observe_signal)
        self.patrol = None
        if config.patrol.enabled:
            from streamwatch.metrics import PatrolCollector
            from streamwatch.patrol import Patrol

            self.patrol = Patrol(config, self.monitor, self.batcher.submit)
            self.metrics.add_collector(PatrolCollector(self.patrol.snapshot))

    # -- data flow --------------------------------------------------------------------

    def _clock_sample(self, sample: Sample) -> None:
        """A sample from the sample clock; frame-driven cameras are sampled by their reader."""
        if sample.camera_id not in self._frame_driven:
            self.batcher.submit(sample)

    def _on_result(self, sample: Sample, probabilities) -> None:
        frame = sample.frame
        self.monitor.observe_sample(sample.camera_id, frame.image, frame.captured_mono, frame.motion, probabilities)

    # -- cameras ------------------------------------------------------------------------

    def classifier_picture(self, sample: Sample) -> np.ndarray:
        """The frame as the classifier sees it: the camera's privacy masks filled."""
        regions = self._masks.get(sample.camera_id)
        return fill_regions(sample.frame.image, regions) if regions else sample.frame.image

    def _start_camera(self, camera: CameraConfig) -> None:
        from streamwatch.checks.temporal import MotionMeter
        from streamwatch.sources.reader import CameraReader

        cfg = self.config
        decoder, fallback_after = choose_decode(cfg, camera)
        kwargs: dict[str, Any] = dict(
            loop=camera.loop, rtsp_transport=cfg.camera_value(camera, "rtsp_transport"), motion_meter=MotionMeter
        )
        interval = cfg.camera_value(camera, "sample_interval")
        if decoder == "keyframes":
            from streamwatch.sources.pyav_reader import PyAVReader

            driven = _FrameDrivenSampler(
                camera.id, interval, self.batcher.submit, lambda d: self._frame_driven.get(d.camera_id) is d
            )
            self._frame_driven[camera.id] = driven
            reader = PyAVReader(
                camera.id, camera.url, keyframes_only=True, fallback_after=fallback_after, on_frame=driven,
                successor_below=cfg.camera_value(camera, "frozen_change_threshold"), **kwargs
            )
        else:
            reader = CameraReader(camera.id, camera.url, **kwargs)
        self.monitor.add_camera(cfg, camera)
        reader.start()
        self._readers[camera.id] = reader
        self._fingerprints[camera.id] = camera_fingerprint(cfg, camera)
        self.sampler.add_camera(camera.id, reader, interval, cfg.camera_value(camera, "signal_timeout"))
        log.info("camera_started", camera=camera.id, url=mask_url(camera.url), decode=decoder)

    def _stop_camera(self, camera_id: str, forget: bool) -> None:
        self.sampler.remove_camera(camera_id)
        reader = self._readers.pop(camera_id, None)
        self._fingerprints.pop(camera_id, None)
        self._frame_driven.pop(camera_id, None)
        if reader is not None:
            reader.stop(2.0)
        self.monitor.remove_camera(camera_id, forget=forget)
        log.info("camera_stopped", camera=camera_id)

    def _announce_cameras(self) -> None:
        cameras = self.config.enabled_cameras()
        if self.reservoir is not None:
            self.reservoir.set_cameras([c.id for c in cameras])
        faults = self.monitor.camera_faults()
        for sink in self.sinks:
            sink.set_cameras(cameras, faults)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.config.metrics_port is not None:
            tls = self.config.metrics_tls
            try:
                self.metrics.serve(
                    self.config.metrics_port,
                    addr=str(self.config.metrics_bind),
                    certfile=str(tls.cert_file) if tls else None,
                    keyfile=str(tls.key_file) if tls else None,
                    client_cafile=str(tls.client_ca_file) if tls and tls.client_ca_file else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a bad key/cert pair
                raise StartupError(f"metrics_port {self.config.metrics_port}: {exc.strerror or exc}") from None
        for sink in self.sinks:
            try:
                sink.start()
            except RuntimeError as exc:  # unreadable TLS or password files: an operator error
                raise StartupError(str(exc)) from None
        if self.reservoir is not None:
            self.reservoir.start()
        self.batcher.start()
        self.sampler.start()
        if self.patrol is not None:
            self.patrol.set_cameras(self.config, self.config.enabled_cameras())
            self.patrol.start()
        for camera in self.config.enabled_cameras() if self.patrol is None else ():
            self._start_camera(camera)
        self._announce_cameras()
        log.info(
            "daemon_started",
            cameras=len(self._readers) if self.patrol is None else self.patrol.camera_count,
            model=self.batcher.model_version,
            runtime=getattr(self.classifier, "runtime", None),
            config=str(self.config_path),
            allocator=allocator(),
            opencv_threads=self._opencv_threads,
        )
        self._notifier.notify("READY=1")

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._reload.set()
        self._stop.set()  # wake the main loop; it tells the two apart

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def run_forever(self) -> None:
        """Block until SIGTERM/SIGINT; handle reloads and the systemd watchdog meanwhile."""
        interval = min(self._notifier.watchdog_interval or MODEL_POLL, MODEL_POLL)
        while True:
            self._stop.wait(interval)
            if self._reload.is_set():
                self._reload.clear()
                self._stop.clear()
                self.reload()
                continue
            if self._stop.is_set():
                break
            self._notifier.notify("WATCHDOG=1")
            self._poll_model()
        self.shutdown()

    def _poll_model(self) -> None:
        """Swap in a newly promoted model between batches; a bad one is refused, the old one stays."""
        if self._model_watcher is None:
            return
        new = self._model_watcher.poll()
        if new is not None:
            self.batcher.swap_classifier(new)
            self.classifier = new  # drop the last reference to the old model (and its onnxruntime session)
            self.monitor.set_model_version(new.version, fused=new.fused)

    def reload(self) -> None:
        """Apply the config file again: start added cameras, stop removed, restart changed."""
        self._notifier.notify("RELOADING=1")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload_rejected", config=str(self.config_path), error=str(exc))
            self._notifier.notify("READY=1")
            return
        for section in ("mqtt", "model", "state_dir", "spool", "log", "reservoir", "metrics_port", "metrics_bind",
                        "metrics_tls"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning("reload_section_needs_restart", section=section)
                setattr(new, section, getattr(self.config, section))
        if new.patrol != self.config.patrol:
            log.warning("reload_section_needs_restart", section="patrol")
            new.patrol = self.config.patrol
        self._masks = mask_table(new)
        if self.patrol is not None:
            self._reload_patrol(new)
            return
        old_ids = set(self._readers)
        self.config = new
        wanted = {c.id: c for c in new.enabled_cameras()}
        for camera_id in sorted(old_ids - set(wanted)):
            self._stop_camera(camera_id, forget=True)
        restarted = []
        for camera_id, camera in wanted.items():
            if camera_id in old_ids and self._fingerprints.get(camera_id) != camera_fingerprint(new, camera):
                self._stop_camera(camera_id, forget=False)
                restarted.append(camera_id)
            if camera_id not in self._readers:
                self._start_camera(camera)
        self._announce_cameras()
        log.info(
            "config_reloaded",
            added=sorted(set(wanted) - old_ids),
            removed=sorted(old_ids - set(wanted)),
            restarted=sorted(restarted),
        )
        self._notifier.notify("READY=1")

    def _reload_patrol(self, new: Config) -> None:
        """Reload in patrol mode: the camera list is adopted from the next visit on."""
        assert self.patrol is not None
        self.config = new
        added, removed, restarted = self.patrol.set_cameras(new, new.enabled_cameras())
        self._announce_cameras()
        log.info("config_reloaded", added=added, removed=removed, restarted=restarted)
        self._notifier.notify("READY=1")

    def shutdown(self) -> None:
        """Stop everything within ~5 s: readers, then pipeline, then sinks (offline + flush)."""
        started = time.monotonic()
        self._notifier.notify("STOPPING=1")
        self.sampler.stop(1.0)
        if self.patrol is not None:
            self.patrol.stop(2.5)
        stoppers = [threading.Thread(target=r.stop, args=(2.0,), daemon=True) for r in self._readers.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(max(0.1, 2.5 - (time.monotonic() - started)))
        self.batcher.stop(1.0)
        if self.reservoir is not None:
            self.reservoir.stop(0.5)
        remaining = max(0.5, STOP_BUDGET - (time.monotonic() - started))
        for sink in self.sinks:
            sink.stop(timeout=remaining)
        if self._spool is not None:
            self._spool.close()
        self.metrics.close()
        log.info("daemon_stopped", seconds=round(time.monotonic() - started, 2))


#: Memory allocator settings. The daemon allocates frame-sized buffers from ~3 threads per camera
#: forever, which fragments glibc's malloc: in the 30-minute soak (docs/reliability.md) RSS
#: crept up by ~110-125 MB/h with glibc and stayed level with jemalloc, which the systemd unit
#: and the container therefore preload (``LD_PRELOAD=libjemalloc.so.2``, Debian package
#: libjemalloc2). Without jemalloc the daemon at least caps glibc's arenas (default 8 per core)
#: at 2; a fixed mmap threshold was tried as well and made no measurable difference.
#: ``MALLOC_*`` variables in the environment win.
MALLOC_SETTINGS = {-8: 2}  # M_ARENA_MAX
_MALLOC_ENV = {-8: "MALLOC_ARENA_MAX"}  # the environment variable glibc reads for each parameter


def allocator() -> str:
    """"jemalloc" when it is preloaded into this process, else "glibc" (or "unknown")."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return "jemalloc" if "jemalloc" in maps.read() else "glibc"
    except OSError:
        return "unknown"


def tune_malloc(settings: dict[int, int] | None = None) -> dict[str, int]:
    """Apply :data:`MALLOC_SETTINGS` with glibc's ``mallopt`` before any thread starts (not
    under jemalloc, where ``mallopt`` means nothing).

    Returns what was set (by environment variable name); empty where glibc is not the C
    library (musl, macOS) - nothing to tune there.
    """
    import ctypes
    import ctypes.util
    import os

    if allocator() != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    done = {}
    for param, value in (settings or MALLOC_SETTINGS).items():
        name = _MALLOC_ENV.get(param, str(param))
        if os.environ.get(name):
            continue
        if mallopt(int(param), int(value)):
            done[name] = int(value)
    return done


def run(config_path: Path) -> int:
    """Entry point of ``streamwatch run``: exit 0 on clean stop, 2 on bad config, 3 on start-up errors."""
    from streamwatch.logsetup import configure_logging

    tune_malloc()

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        configure_logging()
        log.error("config_invalid", error=str(exc))
        print(exc, flush=True)
        return 2
    configure_logging(config.log.level, config.log.format)
    try:
        daemon = Daemon(config_path, config)
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return 3
    daemon.install_signal_handlers()
    try:
        daemon.start()
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        daemon.shutdown()
        return 3
    daemon.run_forever()
    return 0
