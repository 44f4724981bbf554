"""CPU per camera stream for each reader: OpenCV (every frame) vs PyAV (every frame / keyframes only).

Encodes a real-looking 1080p H.264 clip (25 fps, keyframe every 2 s, ~4 Mbit/s) with
tests/support/media.py, then for each reader runs N cameras on it as real-time looping files
(or, with --rtsp, over the loopback RTSP test server, one server process per camera) and measures
this process's CPU time (all threads) over the run. Output: a table and JSON.

    python bench/decode.py                      # 4 cameras, 15 s per reader
    python bench/decode.py --cameras 8 --seconds 30 --rtsp --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamwatch.sources.backoff import Backoff  # noqa: E402
from streamwatch.sources.pyav_reader import PyAVReader  # noqa: E402
from streamwatch.sources.reader import CameraReader  # noqa: E402
from tests.support.media import RtspServer, make_clip  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(kind: str, urls: list[str], seconds: float, motion: bool) -> dict:
    def make(i: int, url: str):
        kwargs = dict(loop=True, backoff=Backoff(0.5, 2.0), decode_threads=1)
        if motion:
            from streamwatch.checks.temporal import MotionMeter

            kwargs["motion_meter"] = MotionMeter
        if kind == "opencv":
            return CameraReader(f"cam{i}", url, **kwargs)
        return PyAVReader(f"cam{i}", url, keyframes_only=(kind == "pyav-keyframes"), **kwargs)

    readers = [make(i, url) for i, url in enumerate(urls)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(r.status().frames for r in readers):
        time.sleep(0.05)
    time.sleep(1.0)  # past open/probe
    frames0 = sum(r.status().frames for r in readers)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(), time.monotonic()
    frames1 = sum(r.status().frames for r in readers)
    for r in readers:
        r.stop(5)
    wall = t1 - t0
    n = len(readers)
    return {
        "reader": kind,
        "cameras": n,
        "seconds": round(wall, 2),
        "cpu_s_per_stream_s": round((cpu1 - cpu0) / wall / n, 4),
        "frames_per_s_per_camera": round((frames1 - frames0) / wall / n, 2),
        "cpu_percent_of_one_core_total": round(100 * (cpu1 - cpu0) / wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--bitrate", default="4M")
    parser.add_argument("--rtsp", action="store_true", help="serve each camera over the loopback RTSP test server")
    parser.add_argument("--motion", action="store_true", help="also run checks.temporal.MotionMeter per frame")
    parser.add_argument("--readers", default="opencv,pyav-all,pyav-keyframes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="swbench-"))
    clip = make_clip(work / "cam.mp4", seconds=20, size=(width, height), fps=25, gop=50, content="pan",
                     bitrate=args.bitrate)  # fmt: skip
    servers = []
    if args.rtsp:
        servers = [RtspServer(clip).start() for _ in range(args.cameras)]
        urls = [s.url for s in servers]
    else:
        urls = [str(clip)] * args.cameras
    results = []
    try:
        for kind in args.readers.split(","):
            results.append(run(kind, urls, args.seconds, args.motion))
            print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        for s in servers:
            s.kill()
    source = "rtsp" if args.rtsp else "file"
    print(f"\n{args.cameras} x {args.size} H.264 25 fps GOP 50 {args.bitrate}bit/s, {source}, {os.cpu_count()} CPUs")
    print(f"{'reader':16} {'CPU s / stream s':>17} {'frames/s/cam':>13} {'CPU % (1 core)':>15}")
    for r in results:
        print(f"{r['reader']:16} {r['cpu_s_per_stream_s']:17.4f} {r['frames_per_s_per_camera']:13.2f} "
              f"{r['cpu_percent_of_one_core_total']:15.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"source": source, "size": args.size, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
