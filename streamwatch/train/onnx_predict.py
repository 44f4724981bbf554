"""The network as ONNX: the export's graph, and its probabilities on many cached views.

Fitting the fusion at export needs the network's output on every fitting picture (74,604 for
the shipped model). onnxruntime runs this network about three times faster than torch eager on
this CPU kind (``python bench/probabilities_cost.py``, session 27: 3.3x on one thread, the two
alternated in one process) and gives the same probabilities to about 2e-6."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from streamwatch import CLASS_NAMES
from streamwatch.model.preprocess import Geometry, normalize


def write_onnx_graph(model: torch.nn.Module, geometry: Geometry, path: str | Path) -> None:
    """Trace ``model`` (eval mode) to an ONNX graph with input ``input`` (batch, views, 3, S, S),
    normalised, and output ``logits``; the batch axis is dynamic."""
    x = torch.zeros(1, geometry.views, 3, geometry.size, geometry.size)
    torch.onnx.export(model.eval(), (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)


def onnx_probabilities(model: torch.nn.Module, views_u8: np.ndarray, geometry: Geometry, threads: int = 2,
                       batch: int = 16) -> np.ndarray:
    """float32 softmax probabilities (N, C) of ``model`` on uint8 views (N, V, 3, S, S) - a
    memory-mapped views cache is read ``batch`` pictures at a time - run by onnxruntime on a
    temporary export of the model."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="streamwatch-onnx-") as tmp:
        graph = Path(tmp) / "network.onnx"
        write_onnx_graph(model, geometry, graph)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(views_u8), batch):
        logits = session.run(["logits"], {"input": normalize(np.asarray(views_u8[i : i + batch]))})[0]
        logits = logits.astype(np.float64)  # softmax in float64: the fusion takes log-probabilities
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out.append((e / e.sum(axis=1, keepdims=True)).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)
