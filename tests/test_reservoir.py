"""The frame reservoir: uniform over time, bounded on disk, never in the way."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from streamwatch.reservoir import Reservoir
from tests.support.broker import wait_until

NORMAL = np.array([0.97, 0.01, 0, 0, 0, 0.01, 0.01, 0], np.float32)
UNSURE = np.array([0.55, 0.4, 0, 0, 0, 0.05, 0, 0], np.float32)


def textured(seed: int, size=(360, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8)


def drain(reservoir: Reservoir) -> None:
    assert wait_until(lambda: reservoir._queue.unfinished_tasks == 0 or reservoir._queue.empty(), 10)
    time.sleep(0.2)


def test_only_confident_normal_or_fault_frames_are_kept(tmp_path):
    r = Reservoir(tmp_path, min_interval=0, frames_per_camera=5, seed=1)
    r.start()
    r.set_cameras(["cam"])
    assert r.offer("cam", textured(0), NORMAL, [], now=0)
    assert not r.offer("cam", textured(1), UNSURE, [], now=1)
    assert not r.offer("cam", textured(2), None, [], now=2)  # no classifier verdict
    assert r.offer("cam", textured(3), UNSURE, ["blurred"], now=3)
    r.stop()
    assert len(list((tmp_path / "cam" / "normal").glob("*.jpg"))) == 1
    assert len(list((tmp_path / "cam" / "faults" / "blurred").glob("*.jpg"))) == 1


def test_rate_limited_per_camera(tmp_path):
    r = Reservoir(tmp_path, min_interval=60, seed=1)
    assert r.offer("cam", textured(0), NORMAL, [], now=0)
    assert not r.offer("cam", textured(0), NORMAL, [], now=30)
    assert r.offer("other", textured(0), NORMAL, [], now=30)
    assert r.offer("cam", textured(0), NORMAL, [], now=61)


def test_reservoir_sampling_is_uniform_over_time(tmp_path):
    """Algorithm R: after 400 candidates in 10 slots, early and late frames are equally likely."""
    early = 0
    runs = 30
    for run in range(runs):
        r = Reservoir(tmp_path / str(run), min_interval=0, frames_per_camera=10, seed=run, max_width=32)
        r.start()
        r.set_cameras(["cam"])
        small = textured(run, (8, 8))
        for i in range(400):
            while not r.offer("cam", small, NORMAL, [], now=i):
                time.sleep(0.001)  # queue full: wait for the writer
        r.stop(10)
        index = json.loads((tmp_path / str(run) / "cam" / "index.json").read_text())
        assert index["seen"] == 400 and len(index["slots"]) == 10
        early += sum(1 for meta in index["slots"].values() if meta["n"] <= 200)
    share = early / (10 * runs)
    assert 0.4 < share < 0.6, share  # a FIFO would give 0.0


def test_disk_budget_never_exceeded(tmp_path):
    budget_mb = 0.3
    r = Reservoir(tmp_path, max_mb=budget_mb, min_interval=0, frames_per_camera=100, fault_frames=100, seed=3)
    r.start()
    r.set_cameras(["a", "b"])
    for i in range(60):
        while not r.offer("a", textured(i, (100, 100)), NORMAL, [], now=i):
            time.sleep(0.001)
        while not r.offer("b", textured(i + 1000, (100, 100)), UNSURE, ["gaussian_noise"], now=i):
            time.sleep(0.001)
    r.stop(20)
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total <= budget_mb * 1_000_000 * 1.02, total  # index files are a few hundred bytes
    assert len(list((tmp_path / "a" / "normal").glob("*.jpg"))) >= 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_logged_not_fatal(tmp_path):
    tmp_path.chmod(0o500)
    try:
        r = Reservoir(tmp_path / "sub", min_interval=0)
        r.start()
        assert r.offer("cam", textured(0), NORMAL, [], now=0)
        r.stop()
        assert not r._thread.is_alive()
    finally:
        tmp_path.chmod(0o700)


def test_unwritable_target_is_logged_not_fatal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = Reservoir(blocker / "reservoir", min_interval=0)  # a file where a folder should be
    r.start()
    assert r.offer("cam", textured(0), NORMAL, [], now=0)
    assert r.offer("cam", textured(1), UNSURE, ["blurred"], now=1)
    time.sleep(0.5)
    assert r._thread.is_alive()
    r.stop()
