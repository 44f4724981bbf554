"""Timing of the serving path on this machine (no torch needed).

    python -m streamwatch.train.bench [--model PATH] [--threads 1] [--repeat 50]

Prints one JSON object: CPU ms (process time) per frame for ``make_views`` on 1080p / 720p /
CIF frames, the same for the fusion's ``frame_features``, and ms per image for ``Classifier.predict_views`` at batch 1 and
8 (and ``predict`` end-to-end on 1080p at batch 1 and 8).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from streamwatch.model.fusion import frame_features
from streamwatch.model.preprocess import make_views
from streamwatch.model.runtime import Classifier


def _frame(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _ms(fn, repeat: int) -> float:
    """CPU milliseconds per call (process time, best of 3 rounds).

    The cores are shared with other work, so wall-clock time mostly measures
    the neighbours; with one onnxruntime thread the work runs on the calling
    thread and process time is the cost of the call itself.
    """
    fn()
    best = []
    for _ in range(3):
        t = time.process_time()
        for _ in range(repeat):
            fn()
        best.append((time.process_time() - t) / repeat * 1000)
    return min(best)


def bench(model: str | Path | None = None, threads: int = 1, repeat: int = 30) -> dict:
    cv2.setNumThreads(1)  # as the daemon runs OpenCV (streamwatch.daemon.OPENCV_THREADS)
    clf = Classifier(model, threads=threads)
    g = clf.geometry
    out: dict = {"model": str(clf.path), "version": clf.version, "threads": threads, "geometry": json.loads(g.to_json())}
    for name, (w, h) in {"1080p": (1920, 1080), "720p": (1280, 720), "cif": (352, 288)}.items():
        f = _frame(w, h)
        out[f"preprocess_ms_{name}"] = round(_ms(lambda: make_views(f, g), repeat), 3)
        out[f"fusion_measurements_ms_{name}"] = round(_ms(lambda: frame_features(f), repeat), 3)
    v1 = make_views(_frame(1920, 1080), g)[None]
    v8 = np.repeat(v1, 8, axis=0)
    out["predict_views_ms_per_image_b1"] = round(_ms(lambda: clf.predict_views(v1), repeat), 3)
    out["predict_views_ms_per_image_b8"] = round(_ms(lambda: clf.predict_views(v8), max(1, repeat // 4)) / 8, 3)
    f = _frame(1920, 1080)
    out["predict_1080p_ms_per_frame_b1"] = round(_ms(lambda: clf.predict([f]), max(1, repeat // 2)), 3)
    out["predict_1080p_ms_per_frame_b8"] = round(_ms(lambda: clf.predict([f] * 8), max(1, repeat // 8)) / 8, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamwatch.train.bench")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=30)
    a = p.parse_args(argv)
    print(json.dumps(bench(a.model, a.threads, a.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
