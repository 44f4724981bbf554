"""The batcher's pre-processing pool: same verdicts as the classifier run serially, and the
pool's threads end with the batcher."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from streamwatch.batcher import Batcher
from streamwatch.events import Frame
from streamwatch.model.runtime import Classifier
from streamwatch.sampling import Sample


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, size=(45, 80, 3), dtype=np.uint8)
        frame = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)
        if i % 2:
            frame = np.clip(frame + rng.normal(0, 25, frame.shape), 0, 255).astype(np.uint8)
        out.append(frame)
    return out


def test_pool_gives_the_serial_verdicts_and_stops_its_threads():
    classifier = Classifier()
    assert classifier.fused  # the shipped model: views and measurements both go through the pool
    frames = _frames(6)
    serial = classifier.predict(frames)
    results: dict[int, np.ndarray] = {}
    done = threading.Event()

    def on_result(sample: Sample, probabilities: np.ndarray | None) -> None:
        results[sample.frame.seq] = probabilities
        if len(results) == len(frames):
            done.set()

    batcher = Batcher(classifier, on_result, batch_size=6, max_wait=0.5, preprocess_workers=2)
    batcher.start()
    now = time.monotonic()
    for i, image in enumerate(frames):
        batcher.submit(Sample("cam", Frame("cam", image, i, time.time(), now), now))
    assert done.wait(60)
    assert any(t.name.startswith("preprocess") for t in threading.enumerate())
    batcher.stop()
    np.testing.assert_allclose(np.stack([results[i] for i in range(len(frames))]), serial, atol=1e-5)
    deadline = time.monotonic() + 5
    while any(t.name.startswith(("preprocess", "batcher")) for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("preprocess", "batcher"))]
