"""How many cameras one box patrols every 5 minutes (issue 5, patrol mode; docs/patrol.md).

Runs the real daemon (``streamwatch run``, patrol mode, the default model, a real Mosquitto) over
N camera entries that point at looping 1920x1080 H.264 files (25 fps, keyframe every 2 s,
4 Mbit/s, real footage scaled up: ``bench/clips.py``; 2 % of the cameras freeze, 2 % turn
monochrome), with ``cycle: 0`` (no pause between rounds) and ``--workers`` visits at a time,
each visit ``samples`` keyframe samples over ``dwell`` seconds. N is chosen so one round lasts
longer than the run: every worker is busy for the whole measurement. After a warm-up it
measures for ``--seconds``:

* visits/s (``streamwatch_patrol_visits`` from the daemon's Prometheus endpoint) and failed
  visits; cameras per 5 minutes = visits/s x 300 (a camera needs one visit per cycle);
* mean visit duration (workers / visits per second: workers are never idle in the window);
* process CPU % of the machine (all threads, ``/proc/<pid>/stat``), peak RSS, samples the
  batcher dropped, p95 capture-to-decision latency;
* *at 80 % CPU*: cameras per 5 minutes scaled linearly to 80 % of the machine when the run
  used more (an estimate, marked as such) - the honest capacity figure is the largest worker
  count that stays under 80 % with nothing dropped.

``--rtsp K`` adds a run over K loopback RTSP servers (tests/support/media.py, each streaming
the 1080p clip to any number of clients) with the smallest worker count, to check that files
are representative (connection set-up over RTSP, packets instead of a local file).

    python bench/patrol.py --workers 16,32,48 --seconds 120 --rtsp 8 --json /tmp/patrol.json
    python bench/patrol.py --short                       # CI-sized: 640x360, one 30 s run

Prints a table (markdown) and writes JSON. The machine is shared: quote medians of repeats.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import clips as clipmod  # noqa: E402
from bench.cameras import (  # noqa: E402
    NCPU,
    Mosquitto,
    cpu_name,
    start_daemon,
    free_port,
    histogram_quantile,
    model_path,
    proc_cpu_seconds,
    proc_peak_rss_mb,
)

CPU_BUDGET = 80.0
FIVE_MINUTES = 300.0


def scrape_patrol(port: int) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as response:
        text = response.read().decode()
    out: dict[str, Any] = {"visits": 0.0, "failed": 0.0, "dropped": 0.0, "latency": {}, "samples": 0.0,
                           "faults": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "streamwatch_patrol_visits":
                out["visits"] += s.value
            elif s.name == "streamwatch_patrol_visits_failed":
                out["failed"] += s.value
            elif s.name == "streamwatch_samples_dropped_total":
                out["dropped"] = s.value
            elif s.name == "streamwatch_samples_total":
                out["samples"] += s.value
            elif s.name == "streamwatch_capture_to_decision_seconds_bucket":
                out["latency"][float(s.labels["le"])] = s.value
            elif s.name == "streamwatch_fault_active" and s.value:
                out["faults"].setdefault(s.labels["fault"], []).append(s.labels["camera"])
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat: others' load is reported too."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def camera_plan(n: int, clips: dict[str, Path], urls: list[str] | None) -> list[dict]:
    cams = []
    for i in range(n):
        kind = "frozen" if i % 50 == 1 else "mono" if i % 50 == 2 else "normal"
        url = urls[i % len(urls)] if urls else str(clips[kind])
        cams.append({"id": f"cam{i:05d}", "url": url, "loop": True, "kind": "normal" if urls else kind})
    return cams


def run_patrol(workers: int, seconds: float, warmup: float, clips: dict[str, Path], args: argparse.Namespace,
               work: Path, model: Path | None, urls: list[str] | None = None) -> dict[str, Any]:

    run_dir = Path(tempfile.mkdtemp(prefix=f"patrol{workers}-", dir=work))
    broker = Mosquitto(run_dir)
    metrics_port = free_port()
    # Enough cameras that the first round outlasts the run (visits take >= dwell * (s-1)/s).
    min_visit = args.dwell * (args.samples - 1) / args.samples
    n = workers * math.ceil((warmup + seconds + 30) / min_visit)
    plan = camera_plan(n, clips, urls)
    config = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": f"sw-patrol-{workers}",
                 "discovery": {"enabled": False}},
        "state_dir": str(run_dir / "state"),
        "log": {"format": "json", "level": "info"},
        "metrics_port": metrics_port,
        "model": {"enabled": model is not None, **({"path": str(model)} if model else {})},
        "reservoir": {"enabled": False},
        "patrol": {"enabled": True, "cycle": 0, "dwell": args.dwell, "samples": args.samples,
                   "workers": workers, "open_timeout": 8},
        "cameras": [{k: v for k, v in c.items() if k != "kind"} for c in plan],
    }
    cfg_path = run_dir / "sw.yaml"
    log_path = run_dir / "daemon.log"
    proc, log = start_daemon(config, cfg_path, log_path)
    result: dict[str, Any] = {"workers": workers, "cameras_configured": n, "source": "rtsp" if urls else "file",
                              "dwell_s": args.dwell, "samples": args.samples,
                              "model": str(model.name) if model else None, "seconds": seconds}
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {log_path.read_text()[-3000:]}")
            try:
                scrape_patrol(metrics_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        time.sleep(warmup)
        before, cpu0, t0 = scrape_patrol(metrics_port), proc_cpu_seconds(proc.pid), time.monotonic()
        busy0 = machine_busy()
        time.sleep(seconds)
        after, cpu1, t1 = scrape_patrol(metrics_port), proc_cpu_seconds(proc.pid), time.monotonic()
        busy1 = machine_busy()
        machine = 100.0 * (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1])
        elapsed = t1 - t0
        visits = after["visits"] - before["visits"]
        rate = visits / elapsed
        cpu = 100.0 * (cpu1 - cpu0) / elapsed / NCPU
        per5 = rate * FIVE_MINUTES
        latency = {le: after["latency"].get(le, 0.0) - before["latency"].get(le, 0.0) for le in after["latency"]}
        kinds = {c["id"]: c["kind"] for c in plan}
        result.update(
            visits=int(visits),
            visits_per_s=round(rate, 3),
            failed_visits=int(after["failed"] - before["failed"]),
            samples_per_s=round((after["samples"] - before["samples"]) / elapsed, 2),
            mean_visit_s=round(workers / rate, 2) if rate else None,
            cpu_percent=round(cpu, 1),
            machine_busy_percent=round(machine, 1),
            others_percent=round(max(0.0, machine - cpu), 1),
            cpu_ms_per_visit=round(1000.0 * (cpu1 - cpu0) / visits, 1) if visits else None,
            peak_rss_mb=round(proc_peak_rss_mb(proc.pid), 1),
            dropped=int(after["dropped"] - before["dropped"]),
            p95_decision_s=round(histogram_quantile(latency, 0.95) or 0.0, 3),
            cameras_per_5min=int(per5),
            cameras_per_5min_at_80pct=int(per5 * min(1.0, CPU_BUDGET / cpu)) if cpu > 0 else None,
            faults_raised={f: {k: sum(kinds.get(c) == k for c in cams) for k in ("normal", "frozen", "mono")}
                           for f, cams in after["faults"].items()},
        )
        rounds = [json.loads(line) for line in log_path.read_text().splitlines()
                  if line.startswith("{") and '"patrol_round"' in line]
        result["rounds_completed"] = len(rounds)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        broker.stop()
    return result


def start_rtsp(count: int, clip: Path) -> tuple[list[Any], list[str]]:
    from tests.support.media import RtspServer

    servers = [RtspServer(clip).start() for _ in range(count)]
    return servers, [s.url for s in servers]


def table(rows: list[dict]) -> str:
    head = ("| source | workers | visits/s | mean visit s | CPU % (of 2 cores) | CPU ms/visit | dropped "
            "| failed | p95 decision s | peak RSS MB | cameras / 5 min | at <= 80 % CPU |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    for r in rows:
        scaled = r["cameras_per_5min_at_80pct"]
        mark = "" if r["cpu_percent"] <= CPU_BUDGET else " (scaled)"
        lines.append(
            f"| {r['source']} | {r['workers']} | {r['visits_per_s']} | {r['mean_visit_s']} | {r['cpu_percent']} "
            f"| {r['cpu_ms_per_visit']} | {r['dropped']} | {r['failed_visits']} | {r['p95_decision_s']} "
            f"| {r['peak_rss_mb']} | {r['cameras_per_5min']} | {scaled}{mark} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="16,32,48", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=120.0, help="measurement window per run")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dwell", type=float, default=6.0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--model", default="auto", help="auto|shipped|random|none|PATH (bench/cameras.py)")
    parser.add_argument("--rtsp", type=int, default=0, help="also run over this many loopback RTSP servers")
    parser.add_argument("--short", action="store_true", help="CI: 640x360 clips, 8 workers, 30 s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    size = clipmod.SIZE
    if args.short:
        size, args.workers, args.seconds, args.warmup = (640, 360), "8", 30.0, 10.0
    clips = clipmod.ensure_clips(size=size)
    model = model_path(args.model)
    work = Path(tempfile.mkdtemp(prefix="sw-patrol-bench-"))
    rows: list[dict] = []
    for workers in [int(w) for w in args.workers.split(",")]:
        runs = [run_patrol(workers, args.seconds, args.warmup, clips, args, work, model) for _ in range(args.repeat)]
        best = sorted(runs, key=lambda r: r["visits_per_s"])[len(runs) // 2]  # median by visits/s
        best["repeats"] = [r["visits_per_s"] for r in runs]
        rows.append(best)
        print(json.dumps(best), flush=True)
    if args.rtsp:
        servers, urls = start_rtsp(args.rtsp, clips["normal"])
        try:
            workers = min(int(w) for w in args.workers.split(","))
            rows.append(run_patrol(workers, args.seconds, args.warmup, clips, args, work, model, urls))
            print(json.dumps(rows[-1]), flush=True)
        finally:
            for s in servers:
                s.kill()
    ok = [r for r in rows if r["source"] == "file" and r["cpu_percent"] <= CPU_BUDGET and r["dropped"] == 0]
    summary = {
        "machine": {"cpus": NCPU, "cpu": cpu_name()},
        "clip_size": list(size),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
        "cameras_per_5min_measured": max((r["cameras_per_5min"] for r in ok), default=None),
    }
    print(table(rows))
    print(f"\nlargest measured capacity under {CPU_BUDGET:g} % CPU with nothing dropped: "
          f"{summary['cameras_per_5min_measured']} cameras per 5 minutes")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
