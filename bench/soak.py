"""Soak run (issue 6): the real daemon over >= 50 cameras for a long time; memory, threads and
file descriptors must stay flat.

Runs ``streamwatch run`` as a subprocess with a generated config (the shipped model unless
``--no-model``, ``decode: auto`` = keyframes, default sample interval 1 s) and a real Mosquitto
on a free port. Cameras are small looping H.264 files played in real time (320x180, 25 fps,
keyframe every second, made once with ffmpeg and cached): most of them clean, every 10th one
freezes from 3 s to 9 s of a 12 s loop (so ``frozen`` is raised and cleared every loop and
MQTT events keep flowing), plus two that never work (an RTSP port nobody listens on, and a
file of random bytes) so the reconnect path with its backoff runs all the time.

Every ``--interval`` seconds it samples the daemon process from ``/proc/<pid>`` (the numbers
``ps -o rss,nlwp`` and ``ls /proc/<pid>/fd`` show): resident memory (VmRSS), threads
(``/proc/<pid>/task``), open file descriptors (``/proc/<pid>/fd``), CPU seconds, plus
the Prometheus samples counter and the MQTT events received. It prints a table and a verdict:
after a warm-up (``--warmup``, default 10 % of the run, at least one sample), a least-squares
line through each series gives its slope; the run is FLAT when

* threads and fds end at most max(2, 3 %) and max(4, 3 %) above their first post-warm-up value
  (a leak of one thread per reconnect shows as steady growth in the 30-minute run) and never spread
  over more than max(4, 10 %) and max(8, 10 %) (a reconnect in progress holds a socket and
  maybe helper threads),
* RSS grows by less than ``--max-rss-slope`` MB per hour (default 10) on the fitted line, or
  by less than ``--rss-noise`` MB (default 8) in total over the measured window (a short run's
  slope is dominated by allocator noise),

and every camera that can work was sampled (and the log has no traceback and no camera
password). Exit status 0 when flat, 1 when not.

    python bench/soak.py                                  # 50 cameras, 30 minutes
    python bench/soak.py --cameras 50 --seconds 120 --interval 5 --json soak.json   # CI (tests/test_soak.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cameras import EventListener, Mosquitto, free_port, start_daemon, stop_process  # noqa: E402
from tests.support.media import make_clip  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CACHE = Path(os.environ.get("STREAMWATCH_MEDIA_CACHE", Path.home() / ".cache" / "streamwatch-bench"))


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status.splitlines() if ":" in line}
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mb": int(fields["VmRSS"][0]) / 1024,
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / CLK_TCK,
    }


def ps_check(pid: int) -> str:
    """The same figures from ps(1), printed once at start and end as a cross-check."""
    out = subprocess.run(["ps", "-o", "rss=,nlwp=", "-p", str(pid)], capture_output=True, text=True).stdout.split()
    return f"ps: rss {int(out[0]) / 1024:.1f} MB, threads {out[1]}" if len(out) == 2 else "ps: n/a"


def scrape_samples(port: int) -> dict[str, float]:
    import urllib.request

    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith('streamwatch_samples_total{camera="'):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (seconds), per hour."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600


def make_clips() -> dict[str, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    wanted = {
        "clean_a": dict(seconds=10, content="pan", size=(320, 180), gop=25),
        "clean_b": dict(seconds=10, content="real", size=(320, 180), gop=25),
        "freeze": dict(seconds=12, freeze=(3, 9), content="pan", size=(320, 180), gop=25),
    }
    out = {}
    for name, params in wanted.items():
        path = CACHE / f"soak-{name}.mp4"
        if not path.is_file():
            make_clip(path, **params)
        out[name] = path
    return out


def camera_plan(n: int, clips: dict[str, Path], work: Path) -> list[dict[str, Any]]:
    cameras: list[dict[str, Any]] = []
    for i in range(n - 2):
        if i % 10 == 9:
            cameras.append({"id": f"freeze{i:03d}", "url": str(clips["freeze"]), "loop": True, "frozen_after": 2,
                            "faults": {"frozen": {"raise_after": 1, "clear_after": 1}}})
        else:
            clip = clips["clean_a"] if i % 2 else clips["clean_b"]
            cameras.append({"id": f"cam{i:03d}", "url": str(clip), "loop": True})
    cameras.append({"id": "dead-rtsp", "url": "rtsp://soak:secret@127.0.0.1:9/none", "signal_timeout": 5})
    broken = work / "broken.mp4"
    broken.write_bytes(os.urandom(4096))  # not a video: the reader retries forever
    cameras.append({"id": "dead-file", "url": str(broken), "signal_timeout": 5})
    return cameras


def _have_jemalloc() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libjemalloc.so.2")
        return True
    except OSError:
        return False


def verdict(rows: list[dict[str, float]], warmup: float, max_rss_slope: float, rss_noise: float) -> dict[str, Any]:
    measured = [r for r in rows if r["t"] >= warmup] or rows[-2:]
    ts = [r["t"] for r in measured]
    out: dict[str, Any] = {"measured_from_s": ts[0], "points": len(measured)}
    flat = True
    reasons = []
    for key, band in (("threads", 2), ("fds", 4)):
        values = [r[key] for r in measured]
        slope = slope_per_hour(ts, values)
        spread = max(values) - min(values)
        out[key] = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values),
                    "slope_per_hour": round(slope, 2)}
        # Net growth is what a leak looks like; the spread allowance grows with the count because
        # readers open and close FFmpeg's threads while they reconnect or loop a file (50 cameras:
        # ~150 threads, seen dipping to 143 for one measurement and back).
        if values[-1] - values[0] > max(band, 0.03 * values[0]) or spread > max(2 * band, 0.10 * values[0]):
            flat = False
            reasons.append(f"{key} not flat: {values[0]} -> {values[-1]} (min {min(values)}, max {max(values)})")
    rss = [r["rss_mb"] for r in measured]
    rss_slope = slope_per_hour(ts, rss)
    growth = rss[-1] - rss[0]
    out["rss_mb"] = {"first": round(rss[0], 1), "last": round(rss[-1], 1), "min": round(min(rss), 1),
                     "max": round(max(rss), 1), "slope_mb_per_hour": round(rss_slope, 2), "growth_mb": round(growth, 1)}
    if rss_slope >= max_rss_slope and growth >= rss_noise:
        flat = False
        reasons.append(f"RSS grows {rss_slope:.1f} MB/h ({growth:+.1f} MB over the window)")
    out["flat"] = flat
    out["reasons"] = reasons
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1800.0, help="run length (default 30 minutes)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between measurements")
    parser.add_argument("--warmup", type=float, default=None, help="seconds ignored by the verdict (default 10 %%)")
    parser.add_argument("--max-rss-slope", type=float, default=10.0, help="MB per hour")
    parser.add_argument("--rss-noise", type=float, default=8.0, help="MB of total growth that is never a leak")
    parser.add_argument("--no-model", action="store_true", help="classical checks only")
    parser.add_argument("--no-reservoir", action="store_true", help="do not keep frames for the site trainer")
    parser.add_argument("--allocator", choices=("jemalloc", "glibc"), default="jemalloc",
                        help="jemalloc (preloaded as in deploy/streamwatch.service; falls back to glibc when "
                             "libjemalloc2 is missing) or glibc malloc")
    parser.add_argument("--json", help="write figures and verdict here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, logs, state)")
    args = parser.parse_args(argv)
    if args.cameras < 3:
        parser.error("--cameras must be at least 3")
    warmup = args.warmup if args.warmup is not None else max(args.interval, 0.1 * args.seconds)

    work = Path(tempfile.mkdtemp(prefix="streamwatch-soak-"))
    clips = make_clips()
    broker = Mosquitto(work)
    listener = EventListener(broker.port)
    metrics_port = free_port()
    cameras = camera_plan(args.cameras, clips, work)
    config = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": f"soak-{os.getpid()}"},
        "state_dir": str(work / "state"),
        "log": {"format": "json"},
        "model": {"enabled": not args.no_model, "threads": 1},
        "reservoir": {"enabled": not args.no_reservoir},
        "metrics_port": metrics_port,
        "cameras": cameras,
    }

    config_path = work / "soak.yaml"
    env = {"LD_PRELOAD": "libjemalloc.so.2"} if args.allocator == "jemalloc" and _have_jemalloc() else {}
    proc, log = start_daemon(config, config_path, work / "daemon.log", env=env)
    started = time.monotonic()
    print(f"soak: {args.cameras} cameras, {args.seconds:.0f} s, every {args.interval:g} s; pid {proc.pid}; "
          f"work {work}", flush=True)
    rows: list[dict[str, float]] = []
    header = f"{'t_s':>7} {'rss_mb':>8} {'threads':>8} {'fds':>5} {'cpu_%':>6} {'samples/s':>10} {'events':>7}"
    print(header, flush=True)
    last_cpu, last_samples, last_t = None, None, None
    ps_first = ""
    exit_code = None
    try:
        next_at = started + min(args.interval, 10.0)
        while True:
            time.sleep(max(0.0, next_at - time.monotonic()))
            if proc.poll() is not None:
                exit_code = proc.returncode
                print(f"daemon exited with {exit_code}", flush=True)
                break
            t = time.monotonic() - started
            s = proc_sample(proc.pid)
            per_cam = scrape_samples(metrics_port)
            total = sum(per_cam.values())
            row = {"t": round(t, 1), **s, "samples": total, "events": len(listener.events),
                   "cameras_sampled": sum(1 for v in per_cam.values() if v > 0)}
            rate = (total - last_samples) / (t - last_t) if last_t is not None and t > last_t else 0.0
            cpu = 100 * (s["cpu_s"] - last_cpu) / (t - last_t) if last_t is not None and t > last_t else 0.0
            last_cpu, last_samples, last_t = s["cpu_s"], total, t
            row["samples_per_s"], row["cpu_pct"] = round(rate, 1), round(cpu, 1)
            rows.append(row)
            if not ps_first:
                ps_first = ps_check(proc.pid)
            print(f"{t:7.0f} {s['rss_mb']:8.1f} {s['threads']:8d} {s['fds']:5d} {cpu:6.0f} {rate:10.1f} "
                  f"{len(listener.events):7d}", flush=True)
            if t >= args.seconds:
                break
            next_at += args.interval
        ps_last = ps_check(proc.pid) if proc.poll() is None else "ps: n/a"
    finally:
        stop_process(proc, 10)
        log.close()
        listener.stop()
        broker.stop()

    workable = [c["id"] for c in cameras if not c["id"].startswith("dead-")]
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cameras": args.cameras,
        "seconds": args.seconds,
        "interval": args.interval,
        "model": not args.no_model,
        "rows": rows,
        "ps_first": ps_first,
        "ps_last": ps_last,
    }
    if exit_code is not None or len(rows) < 2:
        result["verdict"] = {"flat": False, "reasons": [f"daemon exited early ({exit_code})"]}
    else:
        result["verdict"] = verdict(rows, warmup, args.max_rss_slope, args.rss_noise)
        sampled = rows[-1]["cameras_sampled"]
        result["verdict"]["cameras_sampled"] = sampled
        if sampled < len(workable):
            result["verdict"]["flat"] = False
            result["verdict"]["reasons"].append(f"only {sampled} of {len(workable)} working cameras were sampled")
    text = (work / "daemon.log").read_text(errors="replace")
    result["log"] = {"tracebacks": text.count("Traceback"),
                     "errors": sum(1 for line in text.splitlines() if '"level": "error"' in line),
                     "lines": text.count("\n"),
                     "credential_leaks": text.count("secret"),
                     "allocator": next((json.loads(line).get("allocator") for line in text.splitlines()
                                        if '"daemon_started"' in line), None)}
    v = result["verdict"]
    if result["log"]["credential_leaks"]:
        v["flat"] = False
        v.setdefault("reasons", []).append("a camera password appeared in the log")
    print(ps_first)
    print(ps_last)
    if "rss_mb" in v:
        print(f"after warm-up ({v['measured_from_s']:.0f} s, {v['points']} points): "
              f"RSS {v['rss_mb']['first']} -> {v['rss_mb']['last']} MB (slope {v['rss_mb']['slope_mb_per_hour']} MB/h), "
              f"threads {v['threads']['first']} -> {v['threads']['last']} (min {v['threads']['min']}, max {v['threads']['max']}), "
              f"fds {v['fds']['first']} -> {v['fds']['last']} (min {v['fds']['min']}, max {v['fds']['max']}); "
              f"{v.get('cameras_sampled')} of {len(workable)} working cameras sampled; "
              f"{rows[-1]['events']} MQTT events; log: {result['log']['lines']} lines, "
              f"{result['log']['tracebacks']} tracebacks")
    print("VERDICT:", "FLAT" if v["flat"] else "NOT FLAT", "; ".join(v.get("reasons", [])), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if v["flat"] and result["log"]["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
