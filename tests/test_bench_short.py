"""``bench/cameras.py --short`` (CI): runs the real daemon and the naive baseline end to end and
writes the JSON report. Only the report's shape and sane values are checked - never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_cameras_short_mode_report(tmp_path):
    pytest.importorskip("torch")  # the naive baseline (and a stand-in model without the shipped one)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cameras.py"), "--short", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] >= 1
    (ours,) = report["ours"]
    assert ours["cameras"] == 4
    for key in ("samples_per_s", "expected_samples_per_s", "sampled_ge_90pct_share", "latency_p50_s", "latency_p95_s",
                "latency_share_within_1s", "cpu_percent", "cpu_core_s_per_camera_s", "peak_rss_mb", "faults",
                "meets_targets"):
        assert key in ours, key
    assert ours["samples_per_s"] > 0 and ours["expected_samples_per_s"] == 2.0
    assert 0.0 <= ours["sampled_ge_90pct_share"] <= 1.0
    assert 0.0 < ours["latency_p50_s"] <= ours["latency_p95_s"] < 60
    assert 0.0 < ours["cpu_percent"] <= 100.0 * 1.05
    assert 50 < ours["peak_rss_mb"] < 20_000
    assert ours["stop_s"] < 10
    assert set(ours["faults"]) >= {"monochrome", "frozen", "false_alerts_on_clean_cameras"}
    naive = report["naive"]
    assert naive["runs"] and all(r["cameras"] >= 1 and 0 <= r["cpu_percent"] for r in naive["runs"])
    summary = report["summary"]
    for key in ("ours_sustained", "naive_sustained", "ratio", "ours_capacity_estimate", "fault_to_alert"):
        assert key in summary, key
    assert "| cameras |" in proc.stdout  # the table


def test_bench_probabilities_cost_reports_a_ratio_and_equal_probabilities():
    """``bench/probabilities_cost.py`` runs torch and onnxruntime on the shipped network; only the
    report's shape and the equality of the two passes are checked - never the ratio."""
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "probabilities_cost.py"), "--views", "4", "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=240, cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["views"] == 4 and len(report["ratios"]) == 1 and report["ratio_torch_over_onnx_median"] > 0
    assert report["max_abs_probability_difference"] < 1e-4
