"""Model runtime alone: samples/s by batch size and input geometry for torch eager, TorchScript,
onnxruntime and OpenVINO fp32/bf16, interleaved in one process.

The network is the daemon's default (``eca_1``, ``streamwatch.model.network.build_model``) with
random weights (speed does not depend on them); one *sample* is one camera frame, i.e. all V
views of its geometry (``112x2`` = 3 views of 112 px, the shipped model; ``224x0`` = one
224 px view). Every configuration runs for ``--seconds`` per round, all configurations one
after another, ``--rounds`` times; the median round is reported, so drift of a shared machine
hits all alike. OpenVINO needs ``pip install 'streamwatch[bench]'`` (skipped if missing).

``--accuracy DIR`` also classifies the images of ``DIR/<class>/*.jpg`` with the shipped model
(or ``--model``) through onnxruntime fp32 and OpenVINO fp32/bf16 and reports accuracy and
agreement with onnxruntime.

    python bench/runtime.py                                   # 2 threads, b1/b8, 112x2 + 224x0
    python bench/runtime.py --threads 1 --batches 1,8,16 --json out.json
    python bench/runtime.py --accuracy /work/scratch/model/ds_v1/test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamwatch.model.runtime import import_openvino  # noqa: E402


def export(geometry, path: Path):
    import torch

    from streamwatch.model.network import build_model
    from streamwatch.train.export import export_onnx

    torch.manual_seed(0)
    model = build_model("eca_1", views=geometry.views).eval()
    export_onnx(model, geometry, path, "eca_1", version="bench", check=False)
    return model


def runners(geometry, threads: int, work: Path, only: set[str] | None) -> dict[str, Callable[[np.ndarray], Any]]:
    import torch

    torch.set_num_threads(threads)
    onnx_path = work / f"eca_1-{geometry.size}x{geometry.tiles}.onnx"
    model = export(geometry, onnx_path)
    out: dict[str, Callable[[np.ndarray], Any]] = {}

    def want(name: str) -> bool:
        return only is None or name in only

    if want("torch-eager"):
        def eager(x: np.ndarray) -> Any:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
        out["torch-eager"] = eager
    if want("torchscript"):
        with torch.no_grad():
            example = torch.zeros(8, geometry.views, 3, geometry.size, geometry.size)
            scripted = torch.jit.freeze(torch.jit.trace(model, example).eval())

        def ts(x: np.ndarray) -> Any:
            with torch.no_grad():
                return scripted(torch.from_numpy(x)).numpy()
        out["torchscript"] = ts
    import onnxruntime as ort

    for n in sorted({threads, 1}, reverse=True):
        name = f"onnxruntime-{n}t"
        if not want(name) and not want("onnxruntime"):
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        out[name] = (lambda s: lambda x: s.run(None, {"input": x})[0])(session)
    try:
        ov = import_openvino()
    except ImportError:
        print("openvino not installed: skipped (pip install 'streamwatch[bench]')", file=sys.stderr)
        return out
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for precision in ("f32", "bf16"):
        name = f"openvino-{precision}"
        if not want(name) and not want("openvino"):
            continue
        if precision == "bf16" and "BF16" not in caps:
            print("CPU has no BF16: openvino-bf16 skipped", file=sys.stderr)
            continue
        compiled = core.compile_model(str(onnx_path), "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})  # fmt: skip
        request = compiled.create_infer_request()
        out[name] = (lambda r: lambda x: r.infer({0: x})[0])(request)
    return out


def measure(fn: Callable[[np.ndarray], Any], x: np.ndarray, seconds: float) -> float:
    fn(x)  # warm (shape-specialised kernels)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n * len(x) / elapsed


def accuracy(data: Path, model_path: Path | None, threads: int, limit: int) -> dict[str, Any]:
    """Accuracy of the model through onnxruntime fp32 and OpenVINO fp32/bf16 on DIR/<class>/*.jpg."""
    import cv2

    from streamwatch import CLASS_NAMES
    from streamwatch.model.runtime import Classifier

    ov = import_openvino()

    clf = Classifier(model_path, threads=threads)
    files = []
    for ci, name in enumerate(CLASS_NAMES):
        folder = data / name
        picked = sorted(folder.glob("*.jpg"))[: limit // len(CLASS_NAMES)] if folder.is_dir() else []
        files += [(p, ci) for p in picked]
    core = ov.Core()
    compiled = {p: core.compile_model(str(clf.path), "CPU", {"INFERENCE_PRECISION_HINT": p,
                                                             "INFERENCE_NUM_THREADS": threads})
                for p in ("f32", "bf16")}  # fmt: skip
    probs: dict[str, list[np.ndarray]] = {"onnxruntime": [], "openvino-f32": [], "openvino-bf16": []}
    labels = []
    for start in range(0, len(files), 16):
        chunk = files[start:start + 16]
        views = np.stack([clf.preprocess(cv2.imread(str(p))) for p, _ in chunk]).astype(np.float32)
        labels += [c for _, c in chunk]
        probs["onnxruntime"].append(clf.predict_views(views))
        for p, c in compiled.items():
            logits = c.create_infer_request().infer({0: views})[0]
            e = np.exp(logits - logits.max(1, keepdims=True))
            probs[f"openvino-{p}"].append(e / e.sum(1, keepdims=True))
    y = np.array(labels)
    ref = np.concatenate(probs["onnxruntime"])
    out: dict[str, Any] = {"images": len(y), "model": str(clf.path), "version": clf.version}
    for name, chunks in probs.items():
        p = np.concatenate(chunks)
        out[name] = {"accuracy": round(float((p.argmax(1) == y).mean()), 4),
                     "agreement_with_onnxruntime": round(float((p.argmax(1) == ref.argmax(1)).mean()), 4),
                     "max_prob_diff": round(float(np.abs(p - ref).max()), 4)}
    return out


def main() -> int:
    from streamwatch.model.preprocess import Geometry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometries", default="112x2,224x0", help="SIZExTILES list")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated runtimes (torch-eager, torchscript, onnxruntime-Nt, openvino-f32, ...)")
    parser.add_argument("--accuracy", type=Path, help="DIR/<class>/*.jpg: accuracy per runtime on the shipped model")
    parser.add_argument("--accuracy-limit", type=int, default=800)
    parser.add_argument("--model", type=Path, help="ONNX model for --accuracy (default: shipped)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    work = Path(tempfile.mkdtemp(prefix="swrt-"))
    results: dict[str, Any] = {"threads": args.threads, "command": " ".join(sys.argv), "rows": []}
    geometries = [Geometry(int(s), int(t)) for s, t in (g.split("x") for g in args.geometries.split(","))]
    batches = [int(b) for b in args.batches.split(",")]
    configs = []
    for g in geometries:
        fns = runners(g, args.threads, work, only)
        for b in batches:
            x = np.random.default_rng(0).standard_normal((b, g.views, 3, g.size, g.size)).astype(np.float32)
            for name, fn in fns.items():
                configs.append((f"{g.size}x{g.tiles}", b, name, fn, x))
    rates: dict[tuple, list[float]] = {(c[0], c[1], c[2]): [] for c in configs}
    for r in range(args.rounds):
        for geom, b, name, fn, x in configs:
            rates[(geom, b, name)].append(measure(fn, x, args.seconds))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    for (geom, b, name), values in rates.items():
        views = 1 + int(geom.split("x")[1])
        med = statistics.median(values)
        results["rows"].append({"geometry": geom, "batch": b, "runtime": name, "samples_per_s": round(med, 1),
                                "views_per_s": round(med * views, 1), "rounds": [round(v, 1) for v in values]})
    names = list(dict.fromkeys(c[2] for c in configs))
    cols = list(dict.fromkeys((c[0], c[1]) for c in configs))
    lookup = {(r["geometry"], r["batch"], r["runtime"]): r["samples_per_s"] for r in results["rows"]}
    lines = [f"samples/s ({args.threads} threads; a sample = all views of one frame; median of {args.rounds} rounds)",
             "| runtime | " + " | ".join(f"{g} b{b}" for g, b in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(str(lookup.get((g, b, n), "–")) for g, b in cols) + " |")
    if args.accuracy:
        results["accuracy"] = accuracy(args.accuracy, args.model, args.threads, args.accuracy_limit)
        lines.append("")
        lines.append(json.dumps(results["accuracy"], indent=1))
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
