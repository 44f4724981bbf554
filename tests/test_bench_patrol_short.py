"""``bench/patrol.py --short`` (CI): the real daemon patrols 640x360 file cameras for 30 s and
the JSON report has sane values. Shapes and plausibility only - never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_patrol_short_mode_report(tmp_path):
    out = tmp_path / "patrol.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "patrol.py"), "--short", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["source"] == "file" and row["workers"] == 8
    assert row["visits"] > 0 and row["failed_visits"] == 0
    assert 2.0 < row["mean_visit_s"] < 30.0  # 3 samples over a 6 s dwell take ~4 s of stream
    assert 0.0 < row["cpu_percent"] <= 105.0
    # The report rounds visits/s to 3 decimals and derives cameras/5 min from the unrounded rate
    # (CI once saw 559 from 1.8633/s against int(1.863 * 300) = 558).
    assert int((row["visits_per_s"] - 0.0005) * 300) <= row["cameras_per_5min"] <= int((row["visits_per_s"] + 0.0005) * 300)
    assert "cameras / 5 min" in proc.stdout
