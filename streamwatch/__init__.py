"""streamwatch: video quality diagnosis for surveillance cameras."""

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
