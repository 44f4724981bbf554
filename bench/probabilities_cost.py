"""torch eager against onnxruntime for the export's network pass over cached views.

``streamwatch export --fuse-on`` needs the network's probabilities on every fitting picture
(``trainer.probabilities_cache``; 74,604 pictures for the shipped fusion). Since session 27 that
pass runs in onnxruntime (``streamwatch.train.onnx_predict.onnx_probabilities``). This bench
times both on the same views, alternated ``--rounds`` times in one process with the same number of
threads, and prints the median ratio (torch time / onnxruntime time) and the largest difference
between their probabilities - a ratio measured side by side, not an absolute time.

    python bench/probabilities_cost.py [--checkpoint PT] [--views 256] [--rounds 5] [--threads 1] [--json]

Views: random uint8 views of the model's geometry (the speed does not depend on the picture).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch.model.preprocess import Geometry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path,
                    default=Path(__file__).resolve().parents[1] / "streamwatch/assets/model.pt")
    ap.add_argument("--variant", default="eca_1")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--views", type=int, default=256, help="pictures per timing (default 256)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from streamwatch.train.export import load_model
    from streamwatch.train.onnx_predict import onnx_probabilities
    from streamwatch.train.trainer import predict_arrays

    torch.set_num_threads(args.threads)
    geometry = Geometry(size=args.size, tiles=args.tiles)
    model = load_model(args.checkpoint, args.variant, geometry)
    views = np.random.default_rng(0).integers(0, 256, (args.views, geometry.views, 3, geometry.size, geometry.size),
                                              dtype=np.uint8)
    ratios, torch_s, onnx_s, diff = [], [], [], 0.0
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        pt = predict_arrays(model, views)
        t1 = time.perf_counter()
        ox = onnx_probabilities(model, views, geometry, threads=args.threads)  # includes tracing the graph
        t2 = time.perf_counter()
        torch_s.append(t1 - t0)
        onnx_s.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
        diff = max(diff, float(np.abs(pt - ox).max()))
    result = {"views": args.views, "rounds": args.rounds, "threads": args.threads,
              "torch_s_median": statistics.median(torch_s), "onnx_s_median": statistics.median(onnx_s),
              "ratio_torch_over_onnx_median": statistics.median(ratios), "ratios": ratios,
              "max_abs_probability_difference": diff}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.views} pictures x {geometry.views} views, {args.threads} thread(s), {args.rounds} rounds: "
              f"torch {result['torch_s_median']:.2f} s, onnxruntime {result['onnx_s_median']:.2f} s (median); "
              f"torch / onnxruntime {result['ratio_torch_over_onnx_median']:.2f}x; "
              f"max |probability difference| {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
