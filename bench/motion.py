"""CPU cost of the frozen check's motion measure, per 1080p stream (single thread, CPU time).

1. OpenCV path: ``MotionMeter`` before (``grey_thumbnail`` + ``mean_difference``: nearest resize,
   cvtColor, float) and after (``motion_thumbnail`` + ``motion_difference``: strided green
   channel, L1 norm) on every freshly decoded frame of the benchmark clip, the two interleaved
   frame by frame (alternating which goes first).
2. PyAV keyframes-only path: decoding keyframes only, vs. keyframes plus each keyframe's
   successor with the luma-plane motion measure (``PyAVReader`` on a static scene), vs. the
   successor only when the keyframe did not change by 2.5 (``PyAVReader`` in the daemon; on the
   moving benchmark clip almost never), vs. every frame;
   CPU seconds per second of stream, passes interleaved ``--rounds`` times.

    python bench/motion.py [--clip PATH] [--frames 250] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import clips as clipmod  # noqa: E402


def motion_meters(clip: str, frames: int) -> dict:
    import cv2

    from streamwatch.checks.temporal import grey_thumbnail, mean_difference, motion_difference, motion_thumbnail

    cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    old_prev = new_prev = None
    old_t, new_t = [], []
    for i in range(frames):
        ok, image = cap.read()
        if not ok:
            break

        def old() -> None:
            nonlocal old_prev
            t = grey_thumbnail(image)
            if old_prev is not None:
                mean_difference(t, old_prev)
            old_prev = t

        def new() -> None:
            nonlocal new_prev
            t = motion_thumbnail(image)
            if new_prev is not None:
                motion_difference(t, new_prev)
            new_prev = t

        for fn, acc in ((old, old_t), (new, new_t)) if i % 2 else ((new, new_t), (old, old_t)):
            t0 = time.thread_time_ns()
            fn()
            acc.append(time.thread_time_ns() - t0)
    cap.release()
    old_ms, new_ms = statistics.mean(old_t) / 1e6, statistics.mean(new_t) / 1e6
    return {"frames": len(old_t), "before_ms_per_frame": round(old_ms, 4), "after_ms_per_frame": round(new_ms, 4),
            "before_core_per_stream_25fps": round(old_ms * 25 / 1000, 4),
            "after_core_per_stream_25fps": round(new_ms * 25 / 1000, 4),
            "speedup": round(old_ms / new_ms, 1)}


def decode_pass(clip: str, mode: str) -> tuple[float, float, int]:
    """(CPU s, stream s, frames delivered) for one pass over the clip."""
    import av

    from streamwatch.checks.temporal import max_cell_difference, mean_difference
    from streamwatch.sources.pyav_reader import luma_thumbnail

    t0 = time.thread_time()
    delivered = 0
    with av.open(clip) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count, ctx.thread_type = 1, "SLICE"
        if mode != "all":
            ctx.skip_frame = "NONKEY"
        key = last_key = None
        for packet in container.demux(stream):
            for frame in packet.decode():
                if mode == "all":
                    delivered += 1
                    continue
                if mode == "keyframes":
                    frame.to_ndarray(format="bgr24")
                    delivered += 1
                    continue
                # keyframes + successor, as PyAVReader
                if key is None and mode == "keyframes+successor-if-unchanged":
                    thumb, scale = luma_thumbnail(frame)
                    prev, last_key = last_key, thumb
                    if prev is not None and max_cell_difference(thumb, prev) * scale >= 2.5:
                        frame.to_ndarray(format="bgr24")
                        delivered += 1
                        continue
                if key is None:
                    key = (frame, frame.to_ndarray(format="bgr24"))
                    ctx.skip_frame = "DEFAULT"
                    continue
                ctx.skip_frame = "NONKEY"
                a, scale = luma_thumbnail(key[0])
                b, _ = luma_thumbnail(frame)
                mean_difference(a, b) * scale
                key = None
                delivered += 1
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
    return time.thread_time() - t0, duration, delivered


def decoding(clip: str, rounds: int) -> dict:
    modes = ("keyframes", "keyframes+successor", "keyframes+successor-if-unchanged", "all")
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    frames = {}
    for _ in range(rounds):
        for m in modes:
            c, d, n = decode_pass(clip, m)
            cpu[m].append(c / d)
            frames[m] = n
    out = {m: {"cpu_s_per_stream_s": round(statistics.median(v), 4), "frames_per_pass": frames[m]} for m, v in cpu.items()}
    k, ks = out["keyframes"]["cpu_s_per_stream_s"], out["keyframes+successor"]["cpu_s_per_stream_s"]
    out["successor_extra_cpu_share"] = round(ks / k - 1, 3)
    out["all_over_keyframes_successor"] = round(out["all"]["cpu_s_per_stream_s"] / ks, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", help="default: the 1080p benchmark clip of bench/clips.py")
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clip = args.clip or str(clipmod.ensure_clips()["normal"])
    result = {"clip": clip, "motion_meter": motion_meters(clip, args.frames), "decode": decoding(clip, args.rounds)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
