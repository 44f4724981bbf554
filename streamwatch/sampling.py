"""Per-camera sample clocks: take the newest frame of each reader every ``sample_interval``.

One thread serves every camera from a heap of due times, so a slow or dead
camera never delays the others (readers never block ``latest()``). Each tick
either hands a fresh frame to the next stage or reports that the camera has
delivered nothing new for ``signal_timeout`` seconds.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import structlog

from streamwatch.events import Frame

log = structlog.get_logger(__name__)


class FrameSource(Protocol):
    def latest(self) -> Frame | None: ...


@dataclass(frozen=True, slots=True)
class Sample:
    camera_id: str
    frame: Frame
    due_mono: float  # when the sample clock asked for it


@dataclass
class _Clock:
    camera_id: str
    source: FrameSource
    interval: float
    signal_timeout: float
    started_mono: float
    last_seq: int = -1
    last_frame_mono: float | None = None
    generation: int = 0


class Sampler:
    """Owns one thread; ``on_sample`` and ``on_signal`` are called from it and must not block."""

    def __init__(
        self,
        on_sample: Callable[[Sample], None],
        on_signal: Callable[[str, bool], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._on_sample = on_sample
        self._on_signal = on_signal
        self._now = clock
        self._clocks: dict[str, _Clock] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._tiebreak = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def add_camera(self, camera_id: str, source: FrameSource, interval: float, signal_timeout: float) -> None:
        with self._wake:
            old = self._clocks.get(camera_id)
            clock = _Clock(camera_id, source, interval, signal_timeout, self._now())
            clock.generation = (old.generation + 1) if old else 0
            self._clocks[camera_id] = clock
            # First sample after one interval gives the reader time to connect.
            heapq.heappush(self._heap, (clock.started_mono + interval, next(self._tiebreak), camera_id, clock.generation))
            self._wake.notify()

    def remove_camera(self, camera_id: str) -> None:
        with self._wake:
            self._clocks.pop(camera_id, None)  # its heap entries are skipped when due

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    now = self._now()
                    if self._heap and self._heap[0][0] <= now:
                        due, _, camera_id, generation = heapq.heappop(self._heap)
                        clock = self._clocks.get(camera_id)
                        if clock is None or clock.generation != generation:
                            continue
                        # Schedule from the due time, not from now, so clocks do not drift;
                        # after a long stall skip missed ticks instead of bursting.
                        next_due = due + clock.interval
                        if next_due <= now:
                            next_due = now + clock.interval
                        heapq.heappush(self._heap, (next_due, next(self._tiebreak), camera_id, generation))
                        break
                    self._wake.wait(timeout=(self._heap[0][0] - now) if self._heap else None)
                if self._stopping:
                    return
            try:
                self._tick(clock, due)
            except Exception:  # a bug in one camera's tick must not stop the others
                log.exception("sampler_tick_failed", camera=clock.camera_id)

    def _tick(self, clock: _Clock, due: float) -> None:
        frame = clock.source.latest()
        now = self._now()
        fresh = frame is not None and frame.seq != clock.last_seq
        if fresh:
            clock.last_seq = frame.seq
            clock.last_frame_mono = frame.captured_mono
        silent_since = clock.last_frame_mono if clock.last_frame_mono is not None else clock.started_mono
        lost = now - silent_since >= clock.signal_timeout
        # Before the first frame and before signal_timeout has passed the signal is unknown,
        # not "fine": reporting it as present would clear a signal_lost restored from before
        # a restart, only to raise it again moments later.
        if lost or clock.last_frame_mono is not None:
            self._on_signal(clock.camera_id, lost)
        if fresh and not lost:
            self._on_sample(Sample(clock.camera_id, frame, due))
