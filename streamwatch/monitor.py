"""Detectors and per-camera state: turns samples into fault transitions for the sinks.

For every sample the monitor gathers one confidence per fault:

* ``frozen``: the temporal check (checks/temporal.py), or the classifier's
  ``frozen`` class (a broken decode: smeared rows, grey/green blocks, torn
  frames), whichever is higher;
* the other image faults: the classifier's class probability when a model is
  loaded; without one, the classical statistics (checks/classical.py) for the
  faults they cover. The classifier outvotes the statistics: they are not mixed.
* ``signal_lost``: from the sampler's clock (no new frame for ``signal_timeout``), or a
  video-loss screen - the flat black / blue / grey picture an encoder sends for a missing
  camera (checks/blank.py) - on :data:`LOSS_SCREEN_SAMPLES` samples in a row. Such a screen
  is no picture of the scene: its samples leave the image faults and the frozen timer alone.

Active faults are saved in ``state_dir/faults.json`` so a restart neither raises
a fault twice nor forgets to clear one. They are saved with a fingerprint of the camera's
source: a camera whose URL changed while the daemon was down watches another stream, so its
saved faults are cleared (with ``cleared`` events) instead of restored, and the new source is
judged afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import structlog

from streamwatch import CLASS_NAMES
from streamwatch.checks.blank import is_video_loss_screen
from streamwatch.checks.classical import ImageStats, classical_scores, image_stats
from streamwatch.checks.temporal import FrozenDetector
from streamwatch.config import CameraConfig, Config
from streamwatch.events import CameraStatus, FaultEvent, iso, parse_iso, utc_now
from streamwatch.metrics import Metrics
from streamwatch.reservoir import Reservoir
from streamwatch.sinks.base import AlertSink
from streamwatch.state import CameraState

log = structlog.get_logger(__name__)


@dataclass
class _Camera:
    config: CameraConfig
    state: CameraState
    frozen: FrozenDetector
    online: bool = True  # until proven otherwise: the first sampler tick decides
    #: Exponentially smoothed classifier probabilities of this camera's recent samples.
    smoothed: np.ndarray | None = None
    #: Consecutive samples that showed a video-loss screen.
    loss_screens: int = 0

    @property
    def shows_loss_screen(self) -> bool:
        return self.loss_screens >= LOSS_SCREEN_SAMPLES


#: Weight of the newest sample in the smoothed classifier probabilities. A single-frame
#: CNN verdict wobbles by +-0.1 from frame to frame on a steady fault; averaging over the
#: last few samples keeps a real fault above its threshold and a one-off spike below it.
SMOOTHING = 0.5

#: Samples in a row that must show a video-loss screen before it counts as ``signal_lost``
#: (the image faults' default ``raise_after``: one black frame at a cut is no outage).
LOSS_SCREEN_SAMPLES = 3


#: Key of the source fingerprint inside a camera's entry in faults.json (no fault has this name).
SOURCE_KEY = "_source"


def source_fingerprint(url: str) -> str:
    """A stable digest of a camera's URL (faults.json must not hold its credentials)."""
    return "sha256:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def fault_confidences(
    probabilities: np.ndarray | None, frozen_score: float, image: np.ndarray | None, gates: bool = True
) -> dict[str, float]:
    """Combine the classifier, the temporal check and (without a model) classical statistics.

    ``gates``: apply the plausibility gates to the classifier's verdicts. A fused model
    (``Classifier.fused``) has already weighed the same measurements, so the daemon skips them
    there and saves measuring the frame twice."""
    if probabilities is not None:
        scores = {name: float(p) for name, p in zip(CLASS_NAMES, probabilities) if name != "normal"}
        if image is not None and gates:
            scores = apply_plausibility_gates(scores, image_stats(image))
    else:
        scores = classical_scores(image) if image is not None else {}
    scores["frozen"] = max(frozen_score, scores.get("frozen", 0.0))
    return scores


#: A picture with this much chroma (mean |Cr|+|Cb| of lit pixels) cannot be black and white.
MONOCHROME_MAX_CHROMA = 6.0
#: An overexposed picture has clipped highlights or is bright overall.
OVEREXPOSED_MIN_CLIPPED = 0.02
OVEREXPOSED_MIN_LUMA = 140.0


def apply_plausibility_gates(scores: dict[str, float], stats: ImageStats) -> dict[str, float]:
    """Veto classifier verdicts that the picture physically contradicts.

    The classifier decides; these gates only remove verdicts no real picture could
    deserve (a colourful frame called monochrome, a dark frame without a single
    clipped pixel called overexposed), which is where a small CNN's false alarms
    cost operators most. The thresholds sit far from the faults' definitions
    (monochrome = chroma removed entirely; overexposure = large clipped areas).
    """
    gated = dict(scores)
    if stats.chroma > MONOCHROME_MAX_CHROMA:
        gated["monochrome"] = 0.0
    if stats.clipped_fraction < OVEREXPOSED_MIN_CLIPPED and stats.mean_luma < OVEREXPOSED_MIN_LUMA:
        gated["overexposed"] = 0.0
    return gated


class Monitor:
    """Thread-safe: the sampler reports signal, the batcher reports samples."""

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        state_dir: Path | None,
        model_version: str | None = None,
        metrics: Metrics | None = None,
        reservoir: Reservoir | None = None,
        model_fused: bool = False,
        pending_events: Iterable[dict] = (),
    ):
        self._sinks = list(sinks)
        self._lock = threading.RLock()
        self._cameras: dict[str, _Camera] = {}
        self._state_file = state_dir / "faults.json" if state_dir is not None else None
        #: Source fingerprint per camera, as saved with its faults (absent in files of older versions).
        self._sources: dict[str, str] = {}
        self._saved = self._load_saved()
        self._replay_pending(pending_events)
        self.model_version = model_version
        #: The classifier fuses whole-frame measurements itself: no plausibility gates needed.
        self.model_fused = model_fused
        self._metrics = metrics
        self._reservoir = reservoir

    def set_model_version(self, version: str | None, fused: bool = False) -> None:
        """Announce a swapped model in every camera's status."""
        with self._lock:
            self.model_version = version
            self.model_fused = fused
        self.publish_all_status()

    # -- camera set -------------------------------------------------------------------

    def add_camera(self, config: Config, camera: CameraConfig) -> None:
        with self._lock:
            state = CameraState.create(camera.id, config.fault_settings(camera))
            saved = self._saved.get(camera.id)
            source = source_fingerprint(camera.url)
            moved = self._sources.get(camera.id, source) != source
            self._sources[camera.id] = source
            if saved and not moved:
                state.restore(saved)
            cam = _Camera(
                camera,
                state,
                FrozenDetector(
                    config.camera_value(camera, "frozen_after"),
                    config.camera_value(camera, "frozen_noise_floor"),
                    config.camera_value(camera, "frozen_change_threshold"),
                ),
            )
            self._cameras[camera.id] = cam
            if saved and moved:
                self._clear_saved_faults(cam, saved)
            else:
                self._publish_status(camera.id)

    def _clear_saved_faults(self, cam: _Camera, saved: dict[str, str]) -> None:
        """Close the faults a camera had on its previous source: the stream they were seen on is
        no longer watched, and a subscriber must not keep them open."""
        now = utc_now()
        events = []
        for fault, raised_at in saved.items():
            events.append(FaultEvent(cam.config.id, fault, "cleared", 0.0, now, raised_at=parse_iso(raised_at)))
        log.info("fault_state_discarded", camera=cam.config.id, reason="camera source changed",
                 faults=sorted(saved))
        self._emit(cam, events, force_status=True)

    def remove_camera(self, camera_id: str, forget: bool = True) -> None:
        """Stop tracking a camera; ``forget=False`` keeps its open faults for a restart."""
        with self._lock:
            self._cameras.pop(camera_id, None)
            if forget:
                self._saved.pop(camera_id, None)
                self._save()

    def fault_states(self) -> dict[str, dict[str, bool]]:
        with self._lock:
            return {cid: cam.state.active() for cid, cam in self._cameras.items()}

    def camera_faults(self) -> dict[str, list[str]]:
        with self._lock:
            return {cid: list(cam.state.faults) for cid, cam in self._cameras.items()}

    # -- observations -----------------------------------------------------------------

    def observe_signal(self, camera_id: str, lost: bool) -> None:
        """The sampler's verdict on the camera's frame clock (``lost``: silent for ``signal_timeout``)."""
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                return
            if lost:
                cam.frozen.reset()  # a frozen timer must not run across an outage
                cam.smoothed = None
            self._observe_signal(cam, lost or cam.shows_loss_screen)

    def _observe_signal(self, cam: _Camera, lost: bool) -> None:
        events = cam.state.observe({"signal_lost": 1.0 if lost else 0.0}, utc_now())
        online = not cam.state.faults["signal_lost"].active if "signal_lost" in cam.state.faults else not lost
        changed = online != cam.online
        cam.online = online
        self._emit(cam, events, force_status=changed)

    def observe_sample(self, camera_id: str, image: np.ndarray, captured_mono: float,
                       motion: float | None, probabilities: np.ndarray | None) -> None:
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                return
            if is_video_loss_screen(image):
                cam.loss_screens += 1
                cam.frozen.reset()  # a loss screen never changes; that is not a frozen camera
                cam.smoothed = None
                if cam.shows_loss_screen:
                    self._observe_signal(cam, True)
                if self._metrics is not None:
                    self._metrics.samples.labels(camera_id).inc()
                return
            cam.loss_screens = 0
            verdict = cam.frozen.update(image, captured_mono, motion)
            smoothed = None
            if probabilities is not None:
                previous = cam.smoothed
                smoothed = probabilities if previous is None else SMOOTHING * probabilities + (1 - SMOOTHING) * previous
                cam.smoothed = smoothed
            scores = fault_confidences(smoothed, 1.0 if verdict.frozen else 0.0, image, gates=not self.model_fused)
            events = cam.state.observe(scores, utc_now())
            self._emit(cam, events)
            self._record_sample(cam, image, probabilities, captured_mono, verdict.frozen)

    def _record_sample(self, cam: _Camera, image: np.ndarray, probabilities: np.ndarray | None,
                       captured_mono: float, frozen: bool) -> None:
        """Book-keeping after a sample was analysed: reservoir candidate and metrics."""
        camera_id = cam.config.id
        if self._reservoir is not None and not (frozen and probabilities is not None):
            active = [f for f, on in cam.state.active().items() if on and f != "signal_lost"]
            self._reservoir.offer(camera_id, image, probabilities, active, captured_mono)
        if self._metrics is not None:
            self._metrics.samples.labels(camera_id).inc()
            self._metrics.decision_latency.observe(time.monotonic() - captured_mono)

    # -- output -----------------------------------------------------------------------

    def _emit(self, cam: _Camera, events: list[FaultEvent], force_status: bool = False) -> None:
        for event in events:
            log.info(
                "fault_" + event.state,
                camera=event.camera,
                fault=event.fault,
                confidence=round(event.confidence, 3),
                raised_at=iso(event.raised_at) if event.raised_at else None,
            )
            for sink in self._sinks:
                sink.publish_event(event)
            if self._metrics is not None:
                self._metrics.events.labels(event.camera, event.fault, event.state).inc()
        if events:
            self._save()
        if events or force_status:
            self._publish_status(cam.config.id)

    def status(self, camera_id: str) -> CameraStatus:
        with self._lock:
            cam = self._cameras[camera_id]
            return CameraStatus(
                camera=camera_id,
                name=cam.config.display_name,
                online=cam.online,
                faults=cam.state.active(),
                updated=utc_now(),
                model=self.model_version,
            )

    def _publish_status(self, camera_id: str) -> None:
        status = self.status(camera_id)
        for sink in self._sinks:
            sink.publish_status(status)

    def publish_all_status(self) -> None:
        with self._lock:
            for camera_id in self._cameras:
                self._publish_status(camera_id)

    # -- persistence of open faults ---------------------------------------------------

    def _replay_pending(self, pending: Iterable[dict]) -> None:
        """Bring the saved fault memory up to date with transitions still in the spool.

        A transition is spooled before ``faults.json`` is rewritten, so a ``kill -9`` between
        the two leaves the spool one step ahead. Replaying the undelivered transitions (oldest
        first) on the saved state means the restarted daemon neither raises a fault twice nor
        clears one twice."""
        changed = 0
        for event in pending:
            try:
                camera, fault, state, time_ = event["camera"], event["fault"], event["state"], event["time"]
            except (KeyError, TypeError):
                continue
            faults = self._saved.setdefault(str(camera), {})
            if state == "raised" and fault not in faults:
                faults[str(fault)] = str(time_)
                changed += 1
            elif state == "cleared" and fault in faults:
                del faults[fault]
                changed += 1
        if changed:
            log.info("fault_state_reconciled", transitions=changed, source="undelivered spooled events")

    def _load_saved(self) -> dict[str, dict[str, str]]:
        if self._state_file is None or not self._state_file.exists():
            return {}
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
            saved = {str(c): {str(f): str(t) for f, t in faults.items()} for c, faults in data.items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("fault_state_unreadable", path=str(self._state_file), error=str(exc))
            return {}
        for camera_id, faults in saved.items():
            source = faults.pop(SOURCE_KEY, None)
            if source is not None:
                self._sources[camera_id] = source
        return saved

    def _save(self) -> None:
        if self._state_file is None:
            return
        for cid, cam in self._cameras.items():
            self._saved[cid] = {
                f: iso(s.raised_at or datetime.now()) for f, s in cam.state.faults.items() if s.active
            }
        data = {cid: {**faults, SOURCE_KEY: self._sources[cid]} if cid in self._sources else faults
                for cid, faults in self._saved.items() if faults}
        tmp = self._state_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self._state_file)
        except OSError as exc:
            # Monitoring goes on; only the restart memory is lost.
            log.error("fault_state_not_saved", path=str(self._state_file), error=str(exc))
