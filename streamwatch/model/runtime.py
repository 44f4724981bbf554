"""onnxruntime wrapper used by the daemon (no torch).

    clf = Classifier()                    # shipped streamwatch/assets/model.onnx
    probs = clf.predict([frame_bgr, ...])  # (N, 8) softmax, order clf.classes

Everything that can be wrong with the model file (missing, truncated, not
ONNX, wrong or missing metadata, wrong input/output shape) raises
:class:`ModelLoadError` from the constructor, naming the path and the problem,
so a bad model is caught at start-up and never crashes a running daemon.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.model.fusion import META_FUSION, Fusion, frame_features
from streamwatch.model.preprocess import Geometry, make_views, runtime_frame

#: Metadata keys written by ``streamwatch export`` and required here.
META_CLASSES = "streamwatch.classes"
META_GEOMETRY = "streamwatch.geometry"
META_VERSION = "streamwatch.version"
META_VARIANT = "streamwatch.variant"
META_TRAINING = "streamwatch.training_data"
META_OUTPUT = "streamwatch.output"  # "logits" (softmax applied here) or "probabilities"


#: Inference engines the daemon can run a model on (``model.runtime``). The model is always
#: validated with onnxruntime; ``openvino-bf16`` then runs it in bfloat16 on CPUs with native
#: BF16 (AVX-512 BF16 / AMX), about 1.7x less CPU per sample than onnxruntime on this machine
#: kind (docs/performance.md), at the cost of small probability differences.
RUNTIMES = ("onnxruntime", "openvino", "openvino-bf16")


def import_openvino():
    """``import openvino`` without its usage telemetry.

    Importing the ``openvino`` package imports its model converter, ``openvino.tools.ovc``, whose
    import sends a usage event to Google Analytics from a background thread and writes
    ``~/intel/openvino_ga_cid`` unless the user opted out beforehand. A camera daemon must not
    phone home, and that non-daemon thread also holds up interpreter exit while the request
    times out on a network without internet. The daemon only needs the runtime (``Core``), so
    the converter is blocked: ``openvino`` catches its ImportError and leaves ``convert_model``
    out. Raises ImportError when OpenVINO is not installed.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)  # None in sys.modules: importing it raises ImportError
    import openvino

    return openvino


def resolve_runtime(name: str) -> str:
    """``auto`` -> ``openvino-bf16`` where OpenVINO is installed and the CPU computes in BF16
    natively (same test accuracy, ~1.7x less CPU per sample: docs/performance.md), else
    ``onnxruntime``; any other name is returned as it is."""
    if name != "auto":
        return name
    try:
        ov = import_openvino()
        if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            return "openvino-bf16"
    except Exception:  # not installed, or no usable CPU plugin: the portable engine
        pass
    return "onnxruntime"


class ModelLoadError(Exception):
    """The model file cannot be used; the message names the path and why."""


def default_model_path() -> Path:
    """The shipped default model, ``streamwatch/assets/model.onnx``."""
    try:
        from importlib.resources import files

        return Path(str(files("streamwatch") / "assets" / "model.onnx"))
    except Exception:  # pragma: no cover - importlib.resources always works for a real package
        return Path(__file__).resolve().parents[1] / "assets" / "model.onnx"


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _compile_openvino(path: Path, blob: bytes, threads: int, bf16: bool):
    """The ONNX model (already validated) compiled by OpenVINO for the CPU."""
    try:
        ov = import_openvino()
    except ImportError as e:
        raise ModelLoadError(f"cannot load {path} with OpenVINO: openvino is not installed ({e})") from e
    core = ov.Core()
    if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise ModelLoadError(f"cannot run {path} in bf16: this CPU has no native BF16; use runtime onnxruntime")
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": max(1, int(threads)),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    try:
        return core.compile_model(core.read_model(blob), "CPU", config)
    except Exception as e:
        raise ModelLoadError(f"model file {path} cannot be compiled by OpenVINO: {e}") from e


class Classifier:
    """Fault classifier on an ONNX model with streamwatch metadata.

    ``threads`` is the engine's intra-op thread count (1 = one core); ``runtime`` one of
    :data:`RUNTIMES`. ``fusion``: combine the network's output with whole-frame measurements
    when the model carries a fitted fusion (:mod:`streamwatch.model.fusion`); ``fused`` says
    whether it does.
    Attributes: ``classes`` (tuple of names, model output order), ``version``,
    ``variant``, ``geometry`` (:class:`~streamwatch.model.preprocess.Geometry`),
    ``path``, ``sha256``, ``metadata`` (all custom metadata).
    """

    def __init__(self, path: Path | str | None = None, threads: int = 1, runtime: str = "onnxruntime",
                 fusion: bool = True) -> None:
        automatic = runtime == "auto"
        runtime = resolve_runtime(runtime)
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES} or 'auto', got {runtime!r}")
        self.runtime = runtime
        self._compiled = None  # OpenVINO compiled model when runtime is openvino*
        self.path = Path(path) if path is not None else default_model_path()
        p = self.path
        if not p.exists():
            raise ModelLoadError(f"model file {p} does not exist")
        if not p.is_file():
            raise ModelLoadError(f"model path {p} is not a file")
        try:
            blob = p.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"model file {p} cannot be read: {e}") from e
        if len(blob) < 64:
            raise ModelLoadError(f"model file {p} is truncated or empty ({len(blob)} bytes)")
        self.sha256 = hashlib.sha256(blob).hexdigest()
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover
            raise ModelLoadError(f"cannot load {p}: onnxruntime is not installed ({e})") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelLoadError(f"model file {p} is not a loadable ONNX model (truncated or corrupt?): {e}") from e
        meta = dict(self._session.get_modelmeta().custom_metadata_map or {})
        self.metadata = meta
        missing = [k for k in (META_CLASSES, META_GEOMETRY, META_VERSION) if k not in meta]
        if missing:
            raise ModelLoadError(f"model file {p} lacks streamwatch metadata {missing}; export it with 'streamwatch export'")
        try:
            classes = tuple(json.loads(meta[META_CLASSES]))
        except (ValueError, TypeError) as e:
            raise ModelLoadError(f"model file {p}: metadata {META_CLASSES} is not a JSON list: {e}") from e
        if classes != CLASS_NAMES:
            raise ModelLoadError(f"model file {p}: classes {list(classes)} do not match streamwatch's {list(CLASS_NAMES)}")
        try:
            self.geometry = Geometry.from_json(meta[META_GEOMETRY])
        except (ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"model file {p}: bad input geometry metadata {meta[META_GEOMETRY]!r}: {e}") from e
        self.classes: tuple[str, ...] = classes
        self.version: str = meta[META_VERSION]
        self.variant: str = meta.get(META_VARIANT, "")
        self._probabilities = meta.get(META_OUTPUT, "logits") == "probabilities"
        self._fusion: Fusion | None = None
        if META_FUSION in meta and fusion:
            try:
                self._fusion = Fusion.from_json(meta[META_FUSION], len(CLASS_NAMES))
            except (ValueError, KeyError, TypeError) as e:
                raise ModelLoadError(f"model file {p}: bad fusion metadata: {e}") from e
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(f"model file {p}: expected 1 input and >= 1 output, got {len(inputs)} and {len(outputs)}")
        shape = list(inputs[0].shape)
        g = self.geometry
        want = [g.views, 3, g.size, g.size]
        if len(shape) != 5 or [int(s) if isinstance(s, int) else s for s in shape[1:]] != want:
            raise ModelLoadError(f"model file {p}: input shape {shape} does not match geometry (batch, {', '.join(map(str, want))})")
        out_shape = list(outputs[0].shape)
        if len(out_shape) != 2 or out_shape[1] != len(CLASS_NAMES):
            raise ModelLoadError(f"model file {p}: output shape {out_shape} is not (batch, {len(CLASS_NAMES)})")
        self._input = inputs[0].name
        self._output = outputs[0].name
        if runtime.startswith("openvino"):
            try:
                self._compiled = _compile_openvino(p, blob, threads, bf16=runtime == "openvino-bf16")
                self._session = None  # validated; OpenVINO runs it from here on
            except ModelLoadError as e:
                if not automatic:
                    raise
                # OpenVINO's CPU plugin JIT-compiles its kernels into writable+executable memory,
                # which MemoryDenyWriteExecute=yes (our systemd unit) forbids: keep onnxruntime.
                import structlog

                structlog.get_logger(__name__).warning(
                    "model_runtime_fallback", wanted=runtime, using="onnxruntime", reason=str(e)[:300])
                self.runtime = "onnxruntime"
        # A dry run catches models that load but cannot execute.
        try:
            self.predict_views(np.zeros((1, g.views, 3, g.size, g.size), np.float32))
        except Exception as e:
            raise ModelLoadError(f"model file {p} loads but fails to run: {e}") from e

    def __repr__(self) -> str:
        return f"Classifier(path={str(self.path)!r}, version={self.version!r}, variant={self.variant!r}, geometry={self.geometry})"

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """One BGR uint8 frame -> float32 (V, 3, S, S) model views."""
        return make_views(frame_bgr, self.geometry)

    def predict_views(self, views: np.ndarray) -> np.ndarray:
        """Pre-processed views (N, V, 3, S, S) or (V, 3, S, S) -> (N, 8) probabilities."""
        v = np.asarray(views, dtype=np.float32)
        if v.ndim == 4:
            v = v[None]
        if v.ndim != 5 or v.shape[1:] != (self.geometry.views, 3, self.geometry.size, self.geometry.size):
            raise ValueError(f"views must be (N, {self.geometry.views}, 3, {self.geometry.size}, {self.geometry.size}), got {v.shape}")
        if len(v) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if self._compiled is not None:
            out = self._compiled(np.ascontiguousarray(v))[0]
        else:
            out = self._session.run([self._output], {self._input: np.ascontiguousarray(v)})[0]
        out = np.asarray(out, dtype=np.float32)
        return out if self._probabilities else _softmax(out).astype(np.float32)

    @property
    def fusion(self) -> Fusion | None:
        """The fitted fusion this model carries (None when absent or disabled)."""
        return self._fusion

    @property
    def fused(self) -> bool:
        """True when predictions combine the network with whole-frame measurements."""
        return self._fusion is not None

    def frame_inputs(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One frame's network views and (with a fusion) its measurements, both of
        :func:`~streamwatch.model.preprocess.runtime_frame` (black bars cut away, decoder tint removed)."""
        frame = runtime_frame(frame)
        return self.preprocess(frame), (frame_features(frame) if self._fusion is not None else None)

    def predict(self, frames: Sequence[np.ndarray], map_frames: Callable = map) -> np.ndarray:
        """BGR uint8 frames (any resolution, may differ) -> (N, 8) class
        probabilities in the order of ``classes`` (fused when the model has a fusion).

        ``map_frames``: how :meth:`frame_inputs` is mapped over the frames, e.g. a thread pool's
        ``map`` (OpenCV releases the GIL; the daemon's batcher passes its pool)."""
        if len(frames) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        inputs = list(map_frames(self.frame_inputs, frames))
        probabilities = self.predict_views(np.stack([views for views, _ in inputs]))
        if self._fusion is None:
            return probabilities
        return self._fusion.apply(probabilities, np.stack([measured for _, measured in inputs]))
