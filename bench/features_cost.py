"""Cost of the fusion's column-seam measure (features version 7) inside ``frame_features``.

The daemon computes ``streamwatch.model.fusion.frame_features`` for every sampled frame. Version 7
added ``lower_column_seam`` / ``lower_column_gain`` (``_lower_column_seam``). This bench times
``frame_features`` on the same frames with the measure and with it replaced by a constant,
alternating the two several times in one process (one OpenCV thread, as in the daemon), and
prints the median ratio - a ratio measured side by side, not an absolute time to compare across
machines.

    python bench/features_cost.py --data /work/scratch/model/ds_v3/test [--frames 20] [--rounds 9] [--json]

Frames: every n-th picture of ``--data`` (a split: DIR/<class>/, as ``streamwatch evaluate`` reads it), resized to
1920x1080.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch.model import fusion  # noqa: E402
from streamwatch.train.dataset import list_images  # noqa: E402


def load_frames(data: Path, count: int) -> list:
    """``count`` pictures spread evenly over ``data``, resized to 1080p."""
    files = sorted(path for path, _ in list_images(data))
    if not files:
        raise SystemExit(f"no pictures under {data}")
    step = max(1, len(files) // count)
    frames = [cv2.imread(str(p)) for p in files[::step][:count]]
    return [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_AREA) for f in frames if f is not None]


def seconds_per_frame(frames: list) -> float:
    """Mean wall time of ``frame_features`` over ``frames``."""
    start = time.perf_counter()
    for frame in frames:
        fusion.frame_features(frame)
    return (time.perf_counter() - start) / len(frames)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a split folder, DIR/<class>/ (e.g. a test split)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=9, help="alternations of with / without")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    frames = load_frames(args.data, args.frames)
    measure = fusion._lower_column_seam
    with_ms, without_ms, ratios = [], [], []
    try:
        for _ in range(args.rounds):
            fusion._lower_column_seam = lambda grey, seams: (0.0, 0.0)
            without = seconds_per_frame(frames)
            fusion._lower_column_seam = measure
            with_measure = seconds_per_frame(frames)
            without_ms.append(without * 1e3)
            with_ms.append(with_measure * 1e3)
            ratios.append(with_measure / without)
    finally:
        fusion._lower_column_seam = measure
    result = {"features_version": fusion.FEATURES_VERSION, "frames": len(frames), "rounds": args.rounds,
              "ms_without": round(statistics.median(without_ms), 2), "ms_with": round(statistics.median(with_ms), 2),
              "median_ratio": round(statistics.median(ratios), 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"frame_features on {result['frames']} 1080p frames, one OpenCV thread: without the column-seam measure "
              f"{result['ms_without']} ms, with it {result['ms_with']} ms per frame; median ratio "
              f"x{result['median_ratio']} over {args.rounds} alternations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
