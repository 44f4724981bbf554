"""Patrol mode: a bounded pool of workers visits thousands of cameras in turn.

Continuous mode keeps one reader (one connection, one decoder) per camera open forever; that
costs a thread, a socket and a decoder per camera and tops out at a few hundred cameras per box.
Vendor VQD servers watch thousands of cameras per box by *patrolling*: connect, look for a few
seconds, disconnect, go to the next camera. This module does the same (``patrol.enabled``):

Rounds and cycle
    A round visits every camera of this replica once, in config order, with at most
    ``patrol.workers`` visits at a time. The next round starts ``patrol.cycle`` seconds after
    the previous one started, or at once if the round took longer (``patrol_behind`` is logged).
    Every round ends with one ``patrol_round`` log line: the achieved ``cycle_seconds`` (start
    of the previous round to start of this one: the revisit interval every camera got),
    ``busy_seconds`` (how long the workers needed for the round: capacity is about
    ``cameras * cycle / busy``), visits and failed visits. The same numbers are Prometheus
    gauges (``streamwatch_patrol_*``, streamwatch/metrics.py ``PatrolCollector``).

A visit
    A fresh ``PyAVReader`` (keyframes plus each keyframe's successor for ``Frame.motion`` unless
    the camera says ``decode: all``; ``auto`` falls back to every frame when the stream has no
    keyframe for 1.25 sample spacings, as in continuous mode) is opened with
    ``patrol.open_timeout``. The visit waits up to ``open_timeout`` for its first frame
    (``patrol.attempts`` open attempts), then takes ``patrol.samples`` samples spread over
    ``patrol.dwell`` seconds: the first frame, then the first frame at or after each further
    multiple of ``dwell / samples`` (a quarter spacing early is accepted, like the frame-driven
    sampler of continuous mode), and disconnects as soon as it has them (or at ``dwell``). The
    samples go through the same batcher (classifier) and monitor as in continuous mode.

Verdicts per visit (``PatrolMonitor``)
    * ``signal_lost``: the camera could not be opened or gave no frame during its visit, or
      every analysed sample of the visit was a video-loss screen (checks/blank.py).
    * ``frozen``: judged on the samples of one visit only. Each visit gets a fresh
      ``FrozenDetector`` with ``frozen_after`` = 3/4 of the visit's planned span
      (``(samples - 1) * dwell / samples``), fed with the visit's samples in order: the visit
      is frozen when no sample pair changed by ``frozen_change_threshold`` (the first sample
      anchors), every later sample was still (``motion <= frozen_noise_floor``; the detector's
      80 % share is then 100 % for up to 5 samples) *and* the first sample was still too - i.e.
      all samples of the visit were still - and the samples spanned at least 3/4 of the
      planned span (a visit cut short by an early disconnect cannot call a freeze). History
      never crosses visits: the picture five minutes ago says nothing about a freeze now.
      The classifier's ``frozen`` class (broken decode) is judged like the other image faults.
    * image faults (classifier, or classical statistics without a model): a visit is positive
      for a fault when at least ``min(raise_after, samples in the visit)`` of its samples reach
      the fault's threshold; its confidence is that k-th highest sample confidence.

Debounce: visits, not samples
    Across visits the per-fault state machine counts *visits*: a fault is raised after
    ``patrol.raise_visits`` positive visits in a row (default 1) and cleared after
    ``patrol.clear_visits`` negative ones (default 1); the faults' ``raise_after`` only sets how
    many samples *within* a visit must agree (above). With a 5-minute cycle an operator gets an
    alert after the first bad visit, not after three cycles (15 minutes), and samples within a
    visit are seconds apart, so requiring several of them to agree keeps the debounce against
    single-frame glitches. Alert latency is therefore at most one cycle + one visit.

Known limits: a file camera plays from its start on every visit (tests, benchmark); cameras
are visited in config order, so one hanging open costs a worker at most ``open_timeout``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import structlog

from streamwatch.checks.blank import is_video_loss_screen
from streamwatch.checks.temporal import FrozenDetector, MotionMeter
from streamwatch.config import CameraConfig, Config, EffectiveFault, mask_url
from streamwatch.events import Frame, utc_now
from streamwatch.monitor import Monitor, _Camera, fault_confidences
from streamwatch.sampling import Sample
from streamwatch.sources.backoff import Backoff
from streamwatch.state import CameraState

log = structlog.get_logger(__name__)

#: A visit's samples must span this share of the planned span for a frozen verdict.
FROZEN_SPAN_SHARE = 0.75
#: A finished visit waits at most this long for the classifier's results of its samples.
RESULT_TIMEOUT = 10.0
#: Frame-driven sampling accepts a frame this share of a spacing before it is due.
SLACK = 0.25
#: ``decode: auto`` decodes every frame once the stream shows no keyframe for this many spacings.
AUTO_MAX_KEYFRAME_GAP = 1.25


# -- verdicts per visit --------------------------------------------------------------------------


def kth_highest(values: list[float], k: int) -> float:
    """The k-th highest value (k >= 1), or 0.0 if there are fewer than k."""
    if len(values) < k:
        return 0.0
    return sorted(values, reverse=True)[k - 1]


@dataclass
class _Visit:
    detector: FrozenDetector
    noise_floor: float
    min_span: float
    submitted: int | None = None  # set when the visit ended
    frames: int = 0
    scores: list[dict[str, float]] = field(default_factory=list)
    first_still: bool = False
    first_mono: float | None = None
    last_mono: float | None = None
    frozen: bool = False
    closed_mono: float | None = None
    #: Samples of this visit that showed a video-loss screen (checks/blank.py).
    loss_screens: int = 0


class PatrolMonitor(Monitor):
    """A ``Monitor`` that decides once per visit; see the module docstring.

    ``begin_visit`` -> samples via ``observe_sample`` (from the batcher) -> ``end_visit``. The
    verdict is applied once every submitted sample has a result, or ``RESULT_TIMEOUT`` after the
    visit ended (samples the batcher dropped never come back), or when the camera's next visit
    begins, whichever is first (``sweep`` applies the timeouts).
    """

    def __init__(self, *args: Any, raise_visits: int = 1, clear_visits: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.raise_visits = raise_visits
        self.clear_visits = clear_visits
        self._visits: dict[str, _Visit] = {}
        self._raise_after: dict[str, dict[str, int]] = {}
        self._frozen_settings: dict[str, tuple[float, float]] = {}

    def add_camera(self, config: Config, camera: CameraConfig) -> None:
        settings = config.fault_settings(camera)
        per_visit = {
            name: EffectiveFault(**{**s.model_dump(), "raise_after": self.raise_visits,
                                    "clear_after": self.clear_visits})
            for name, s in settings.items()
        }
        with self._lock:
            state = CameraState.create(camera.id, per_visit)
            saved = self._saved.get(camera.id)
            if saved:
                state.restore(saved)
            noise = config.camera_value(camera, "frozen_noise_floor")
            change = config.camera_value(camera, "frozen_change_threshold")
            self._raise_after[camera.id] = {name: s.raise_after for name, s in settings.items()}
            self._frozen_settings[camera.id] = (noise, change)
            # The long-lived detector is unused in patrol mode (each visit has its own).
            self._cameras[camera.id] = _Camera(camera, state, FrozenDetector(1.0, noise, change))
            self._publish_status(camera.id)

    def remove_camera(self, camera_id: str, forget: bool = True) -> None:
        with self._lock:
            self._visits.pop(camera_id, None)
        super().remove_camera(camera_id, forget)

    # -- visits ---------------------------------------------------------------------------

    def begin_visit(self, camera_id: str, planned_span: float) -> None:
        with self._lock:
            if camera_id in self._visits:
                self._finish(camera_id)
            noise, change = self._frozen_settings.get(camera_id, (0.01, 2.5))
            min_span = FROZEN_SPAN_SHARE * planned_span
            self._visits[camera_id] = _Visit(FrozenDetector(min_span, noise, change), noise, min_span)

    def end_visit(self, camera_id: str, submitted: int, frames: int) -> None:
        """The visit disconnected after delivering ``frames`` frames of which ``submitted`` were sampled."""
        with self._lock:
            visit = self._visits.get(camera_id)
            if visit is None:
                return
            visit.submitted, visit.frames, visit.closed_mono = submitted, frames, time.monotonic()
            if len(visit.scores) >= submitted:
                self._finish(camera_id)

    def discard_visit(self, camera_id: str) -> None:
        """Forget a visit without a verdict (interrupted by shutdown)."""
        with self._lock:
            self._visits.pop(camera_id, None)

    def sweep(self, now: float | None = None) -> None:
        """Apply verdicts of visits whose results did not all come back in time."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for camera_id, visit in list(self._visits.items()):
                if visit.closed_mono is not None and now - visit.closed_mono >= RESULT_TIMEOUT:
                    self._finish(camera_id)

    def pending_visits(self) -> int:
        with self._lock:
            return len(self._visits)

    def observe_sample(self, camera_id: str, image: np.ndarray, captured_mono: float,
                       motion: float | None, probabilities: np.ndarray | None) -> None:
        with self._lock:
            cam = self._cameras.get(camera_id)
            visit = self._visits.get(camera_id)
            if cam is None or visit is None:
                return  # a late result of a visit already decided
            if is_video_loss_screen(image):
                # No picture of the scene: counts towards the visit's end, decides nothing else.
                visit.loss_screens += 1
                visit.scores.append({})
                if visit.submitted is not None and len(visit.scores) >= visit.submitted:
                    self._finish(camera_id)
                return
            verdict = visit.detector.update(image, captured_mono, motion)
            if visit.first_mono is None:
                visit.first_mono = captured_mono
                visit.first_still = motion is not None and motion <= visit.noise_floor
            visit.last_mono = captured_mono
            visit.frozen = verdict.frozen
            scores = fault_confidences(probabilities, 0.0, image, gates=not self.model_fused)
            visit.scores.append(scores)
            self._record_sample(cam, image, probabilities, captured_mono, verdict.frozen)
            if visit.submitted is not None and len(visit.scores) >= visit.submitted:
                self._finish(camera_id)

    def _finish(self, camera_id: str) -> None:
        """Apply one visit's verdict to the camera's state machines (lock held)."""
        visit = self._visits.pop(camera_id, None)
        cam = self._cameras.get(camera_id)
        if visit is None or cam is None:
            return
        # Every analysed sample a video-loss screen: the recorder has no camera to show.
        lost = visit.frames == 0 or (visit.loss_screens > 0 and visit.loss_screens == len(visit.scores))
        self.observe_signal(camera_id, lost)
        if lost or not visit.scores:
            return  # no picture, or the batcher dropped every sample: image faults untouched
        raise_after = self._raise_after.get(camera_id, {})
        names = set().union(*visit.scores)
        confidences: dict[str, float] = {}
        for name in names:
            k = min(raise_after.get(name, 1), len(visit.scores))
            confidences[name] = kth_highest([s.get(name, 0.0) for s in visit.scores], k)
        span = (visit.last_mono or 0.0) - (visit.first_mono or 0.0)
        temporal = (
            len(visit.scores) >= 2 and visit.frozen and visit.first_still and span >= visit.min_span
        )
        confidences["frozen"] = max(1.0 if temporal else 0.0, confidences.get("frozen", 0.0))
        confidences.pop("signal_lost", None)
        events = cam.state.observe(confidences, utc_now())
        self._emit(cam, events)


# -- the patrol --------------------------------------------------------------------------------


class _QuietLog:
    """Reader log lines at debug level: a patrol connects every camera every cycle."""

    def __init__(self, bound: Any):
        self._bound = bound

    def __getattr__(self, name: str) -> Any:
        def emit(event: str, **fields: Any) -> None:
            self._bound.debug(event, level_was=name, **fields)

        return emit


def _visit_reader_class():
    from streamwatch.sources.pyav_reader import PyAVReader

    class VisitReader(PyAVReader):
        """A reader for one visit: quiet logs; a file joins its loop where a live camera would be."""

        _joined = False
        visit_span = 0.0  # seconds the visit needs; set per reader

        @property
        def _log(self) -> Any:
            return _QuietLog(log.bind(camera=self.camera_id))

        def _open(self) -> Any:
            cap = super()._open()
            if cap is not None and not self.is_network and not self._joined:
                self._joined = True  # only the first open of a visit; loops rewind to 0 as usual
                join_file_live(cap, self.visit_span)
            return cap

    return VisitReader


#: A file camera never joins within this many seconds of its start (x264 start-up frames).
FILE_START_SKIP = 4.0


def join_file_live(cap: Any, span: float, now: float | None = None) -> None:
    """Seek a file to a point that moves with the wall clock, like a camera that kept running.

    A patrol visit of a live camera joins its stream in the middle; a file would otherwise
    replay its first seconds on every visit, and an encoder's first GOPs are refined frame by
    frame (a held picture there differs by > 3 grey levels between the first two keyframes).
    The point lies in ``[FILE_START_SKIP, duration - span]`` so a visit of ``span`` seconds
    neither starts in nor wraps into those first seconds (files shorter than that are played
    from their start). The seek lands on the keyframe at or before that point.
    """
    duration = cap.duration
    usable = (duration or 0.0) - FILE_START_SKIP - span
    if usable <= 0:
        return
    position = FILE_START_SKIP + (time.time() if now is None else now) % usable
    stream = cap.stream
    if stream.time_base is None:
        return
    try:
        cap.container.seek(int(position / stream.time_base), stream=stream, backward=True, any_frame=False)
    except Exception:  # a file that cannot seek is played from its start
        log.debug("patrol_seek_failed", exc_info=True)


def _fingerprint(config: Config, camera: CameraConfig) -> Any:
    return (camera.model_dump(), config.fault_settings(camera),
            [config.camera_value(camera, k) for k in ("frozen_noise_floor", "frozen_change_threshold")])


@dataclass
class _CameraRecord:
    camera: CameraConfig
    last_end: float | None = None
    ok: bool = False
    visits: int = 0
    failed: int = 0
    last_error: str | None = None


class Patrol:
    """Owns a scheduler thread and ``workers`` worker threads; see the module docstring."""

    def __init__(self, config: Config, monitor: PatrolMonitor, submit: Callable[[Sample], None]):
        self.config = config
        self.settings = config.patrol
        self.monitor = monitor
        self._submit = submit
        self._lock = threading.Lock()
        self._records: dict[str, _CameraRecord] = {}
        self._order: list[str] = []
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.settings.workers)
        self._reader_cls = _visit_reader_class()
        self._threads: list[threading.Thread] = []
        self._active: dict[str, Any] = {}  # camera -> reader of the visit in progress
        self.rounds = 0
        self.last_cycle: float | None = None
        self.last_busy: float | None = None
        self._scheduler = threading.Thread(target=self._run, name="patrol", daemon=True)

    # -- camera set ------------------------------------------------------------------------

    def set_cameras(self, config: Config, cameras: list[CameraConfig]) -> tuple[list[str], list[str], list[str]]:
        """Adopt a (new) camera list from the next visit on; returns (added, removed, restarted).

        A camera whose settings changed keeps its open faults but gets new state machines.
        """
        wanted = {c.id: c for c in cameras}
        restarted = []
        with self._lock:
            old_config, self.config = self.config, config
            old = set(self._records)
            for camera_id in old - set(wanted):
                del self._records[camera_id]
            for camera_id, camera in wanted.items():
                record = self._records.get(camera_id)
                if record is None:
                    self._records[camera_id] = _CameraRecord(camera)
                    continue
                if _fingerprint(old_config, record.camera) != _fingerprint(config, camera):
                    restarted.append(camera_id)
                record.camera = camera
            self._order = [c.id for c in cameras]
        added, removed = sorted(set(wanted) - old), sorted(old - set(wanted))
        for camera_id in removed:
            self.monitor.remove_camera(camera_id, forget=True)
        for camera_id in restarted:
            self.monitor.remove_camera(camera_id, forget=False)
        for camera in cameras:
            if camera.id in added or camera.id in restarted:
                self.monitor.add_camera(config, camera)
        return added, removed, sorted(restarted)

    @property
    def camera_count(self) -> int:
        with self._lock:
            return len(self._records)

    def snapshot(self) -> dict:
        with self._lock:
            visits = {cid: (r.last_end, r.ok, r.visits, r.failed) for cid, r in self._records.items()}
            cameras = len(self._records)
        return {"target": self.settings.cycle, "cycle": self.last_cycle, "busy": self.last_busy,
                "rounds": self.rounds, "cameras": cameras, "workers": self.settings.workers, "visits": visits}

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._scheduler.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        with self._lock:
            readers = list(self._active.values())
        for reader in readers:
            reader._stop.set()  # noqa: SLF001 - ask every open visit to end now
        deadline = time.monotonic() + timeout
        self._scheduler.join(max(0.0, deadline - time.monotonic()))
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- scheduler -------------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        previous_start: float | None = None
        previous_busy: float | None = None
        previous_stats: tuple[int, int, int] | None = None
        while not self._stop.is_set():
            start = time.monotonic()
            if previous_start is not None:
                self.last_cycle = start - previous_start
                self.last_busy = previous_busy
                self.rounds += 1
                cameras, visits, failed = previous_stats or (0, 0, 0)
                log.info(
                    "patrol_round", round=self.rounds, cameras=cameras, visits=visits, failed=failed,
                    cycle_seconds=round(self.last_cycle, 2), busy_seconds=round(previous_busy or 0.0, 2),
                    target_seconds=s.cycle, workers=s.workers,
                )
            previous_start = start
            with self._lock:
                order = list(self._order)
            round_stats = {"visits": 0, "failed": 0}
            workers: list[threading.Thread] = []
            for camera_id in order:
                while not self._slots.acquire(timeout=0.2):
                    self.monitor.sweep()
                    if self._stop.is_set():
                        break
                if self._stop.is_set():
                    break
                with self._lock:
                    record = self._records.get(camera_id)
                if record is None:  # removed by a reload meanwhile
                    self._slots.release()
                    continue
                t = threading.Thread(target=self._visit_slot, args=(record, round_stats),
                                     name=f"patrol-{camera_id}", daemon=True)
                workers.append(t)
                self._threads.append(t)
                t.start()
            for t in workers:
                while t.is_alive() and not self._stop.is_set():
                    t.join(0.2)
                    self.monitor.sweep()
            self._threads = [t for t in self._threads if t.is_alive()]
            previous_busy = time.monotonic() - start
            previous_stats = (len(order), round_stats["visits"], round_stats["failed"])
            if self._stop.is_set():
                break
            if previous_busy > s.cycle > 0:
                log.warning("patrol_behind", cameras=len(order), busy_seconds=round(previous_busy, 1),
                            target_seconds=s.cycle, workers=s.workers)
            next_start = start + (s.cycle if order else max(s.cycle, 1.0))  # no cameras: do not spin
            while not self._stop.is_set() and time.monotonic() < next_start:
                self.monitor.sweep()
                self._stop.wait(min(1.0, max(0.0, next_start - time.monotonic())))

    def _visit_slot(self, record: _CameraRecord, stats: dict[str, int]) -> None:
        try:
            ok = self.visit(record)
            with self._lock:
                stats["visits"] += 1
                stats["failed"] += 0 if ok else 1
        except Exception:  # one camera's bug must not stop the patrol
            log.exception("patrol_visit_failed", camera=record.camera.id)
        finally:
            self._slots.release()

    # -- one visit -------------------------------------------------------------------------

    def visit(self, record: _CameraRecord) -> bool:
        """Connect, sample, disconnect; True if the camera gave frames."""
        s = self.settings
        camera = record.camera
        cfg = self.config
        spacing = s.dwell / s.samples
        mode = cfg.camera_value(camera, "decode")
        keyframes = mode != "all"
        fallback = AUTO_MAX_KEYFRAME_GAP * spacing if mode == "auto" else None
        taken: list[Sample] = []
        frames = 0
        done = threading.Event()
        first = threading.Event()
        due: list[float] = []
        first_mono: list[float] = []

        def on_frame(frame: Frame) -> None:
            nonlocal frames
            frames += 1
            if not first_mono:
                first_mono.append(frame.captured_mono)
                first.set()
            if done.is_set():
                return
            t = frame.captured_mono
            if due and t < due[0] - SLACK * spacing:
                return
            due[:] = [(due[0] if due else t) + spacing]
            if due[0] < t:
                due[0] = t + spacing
            sample = Sample(camera.id, frame, t)
            taken.append(sample)
            self._submit(sample)
            if len(taken) >= s.samples:
                done.set()

        self.monitor.begin_visit(camera.id, (s.samples - 1) * spacing)
        reader = self._reader_cls(
            camera.id, camera.url, keyframes_only=keyframes, fallback_after=fallback, on_frame=on_frame,
            loop=camera.loop, rtsp_transport=cfg.camera_value(camera, "rtsp_transport"),
            motion_meter=MotionMeter, open_timeout=s.open_timeout, read_timeout=min(s.open_timeout, 10.0),
            backoff=Backoff(initial=0.5, cap=2.0, jitter="none"),
        )
        reader.visit_span = s.dwell + 1.0
        with self._lock:
            self._active[camera.id] = reader
        started = time.monotonic()
        interrupted = True
        reader.start()
        try:
            deadline = started + s.open_timeout
            while not first.is_set() and not self._stop.is_set():
                status = reader.status()
                if time.monotonic() >= deadline or status.ended:
                    break
                if reader._failures >= s.attempts:  # noqa: SLF001 - written by the reader thread only
                    break  # every allowed open attempt failed
                first.wait(0.05)
            if first.is_set():
                while not done.is_set() and not self._stop.is_set():
                    if reader.status().ended or time.monotonic() - first_mono[0] >= s.dwell:
                        break
                    done.wait(0.05)
            interrupted = self._stop.is_set() and not done.is_set()
            done.set()  # late frames of this visit are not sampled
        finally:
            reader.stop(2.0)
            with self._lock:
                self._active.pop(camera.id, None)
        error = reader.status().last_error
        ok = frames > 0
        if interrupted:
            self.monitor.discard_visit(camera.id)  # cut short by shutdown: no verdict
            return True
        self.monitor.end_visit(camera.id, len(taken), frames)
        with self._lock:
            was_ok = record.ok if record.visits else True
            record.last_end, record.ok, record.last_error = time.monotonic(), ok, error
            record.visits += 1
            record.failed += 0 if ok else 1
        if not ok and was_ok:
            log.warning("patrol_camera_unavailable", camera=camera.id, url=mask_url(camera.url), error=error)
        elif ok and not was_ok:
            log.info("patrol_camera_available", camera=camera.id, url=mask_url(camera.url))
        return ok
