"""streamwatch: video quality diagnosis for surveillance cameras."""

import os

# onnxruntime's official Linux wheels (1.2x and later) upload usage telemetry to Microsoft and
# keep a device id under ~/.cache/Microsoft unless this is set before onnxruntime is first
# imported; a daemon on a camera network must not phone home, so every streamwatch process opts
# out here, before anything imports onnxruntime. An operator who wants to send it sets the
# variable to 0. (OpenVINO's telemetry: streamwatch.model.runtime.import_openvino.)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

#: Classifier output order; also the fault names the daemon publishes.
CLASS_NAMES: tuple[str, ...] = (
    "normal",
    "frozen",
    "overexposed",
    "blurred",
    "color_cast",
    "gaussian_noise",
    "salt_pepper",
    "monochrome",
)

#: Every fault the daemon can raise: the classifier's faults plus stream loss.
FAULT_NAMES: tuple[str, ...] = CLASS_NAMES[1:] + ("signal_lost",)
