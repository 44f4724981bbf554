"""Batches samples from all cameras through the classifier.

Samples wait in a bounded queue; when the model falls behind, the oldest
samples are dropped (and counted) rather than building a backlog, because a
late verdict on an old frame is worth less than a timely one on a new frame.
A batch is run when it is full or when its oldest sample has waited
``max_wait`` seconds.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol, Sequence

import numpy as np
import structlog

from streamwatch.metrics import Metrics
from streamwatch.sampling import Sample

log = structlog.get_logger(__name__)


class BatchClassifier(Protocol):
    version: str

    def predict(self, frames: Sequence[np.ndarray], map_frames: Callable = map) -> np.ndarray: ...


class Batcher:
    """Owns one thread and a small pool for per-frame pre-processing.
    ``on_result(sample, probabilities | None)`` is called from the batcher thread.

    ``preprocess_workers``: threads that make each frame's views and measurements while the
    batcher waits (OpenCV releases the GIL); 1 = no pool, the batcher thread does it. With one
    batcher thread doing everything, 100 cameras with onnxruntime topped out at 43 of 50
    samples/s; two workers reached 49.4 samples/s but cost ~5 % more CPU, which pushed the
    openvino-bf16 run over the 80 % target - hence an option (docs/performance.md)."""

    def __init__(
        self,
        classifier: BatchClassifier | None,
        on_result: Callable[[Sample, np.ndarray | None], None],
        *,
        batch_size: int = 8,
        max_wait: float = 0.1,
        # Each queued sample holds a full decoded frame (6 MB at 1080p): 64 bounds the queue at
        # ~400 MB while still absorbing a burst of cameras sampling in the same instant.
        max_queue: int = 64,
        metrics: Metrics | None = None,
        preprocess_workers: int = 1,
        prepare: Callable[[Sample], np.ndarray] | None = None,
    ):
        self._classifier = classifier
        #: The picture the classifier sees of a sample (default: the frame as decoded; the daemon
        #: fills privacy masks here). Runs in the pre-processing pool.
        self._prepare = prepare
        self._preprocess_workers = preprocess_workers
        self._pool: ThreadPoolExecutor | None = None
        self._on_result = on_result
        self.batch_size = batch_size
        self.max_wait = max_wait
        self._queue: collections.deque[Sample] = collections.deque(maxlen=max_queue)
        self._cond = threading.Condition()
        self._stopping = False
        self.dropped = 0
        self._metrics = metrics
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    @property
    def model_version(self) -> str | None:
        return self._classifier.version if self._classifier is not None else None

    def swap_classifier(self, classifier: BatchClassifier | None) -> None:
        """Use another model from the next batch on (hot reload)."""
        with self._cond:
            self._classifier = classifier

    def start(self) -> None:
        if self._preprocess_workers > 1:
            self._pool = ThreadPoolExecutor(self._preprocess_workers, thread_name_prefix="preprocess")
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._pool is not None:
            # After the batcher thread: a batch in flight finishes its frames first.
            self._pool.shutdown(wait=not self._thread.is_alive(), cancel_futures=True)

    def submit(self, sample: Sample) -> None:
        """Never blocks: a full queue drops its oldest sample."""
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                if self._metrics is not None:
                    self._metrics.dropped.inc()
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning("samples_dropped", total=self.dropped, reason="model cannot keep up")
            self._queue.append(sample)
            self._cond.notify()

    def _next_batch(self) -> list[Sample] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            classifier = self._classifier
            probabilities: np.ndarray | list[None] = [None] * len(batch)
            if classifier is not None:
                started = time.monotonic()
                map_frames = self._pool.map if self._pool is not None else map
                try:
                    frames = list(map_frames(self._prepare, batch)) if self._prepare else [s.frame.image for s in batch]
                    probabilities = classifier.predict(frames, map_frames=map_frames)
                except Exception:
                    log.exception("classifier_failed", batch=len(batch))
                if self._metrics is not None:
                    self._metrics.model_seconds.observe(time.monotonic() - started)
                    self._metrics.batch_size.observe(len(batch))
            self.batches += 1
            for sample, probs in zip(batch, probabilities):
                try:
                    self._on_result(sample, probs)
                except Exception:
                    log.exception("sample_handling_failed", camera=sample.camera_id)
