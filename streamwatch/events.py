"""Value types that travel between the stages of the pipeline.

reader -> ``Frame`` -> sampler -> ``Sample`` -> batcher/model -> detectors/state
-> ``FaultEvent`` / ``CameraStatus`` -> alert sinks. None of them hold behaviour
beyond (de)serialisation, so every stage can be tested on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: ``2026-11-22T05:39:47.123Z``."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime | None:
    """The time :func:`iso` wrote, or None when ``text`` is no ISO 8601 time (a hand-edited or
    damaged state file must not stop the daemon)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture from a camera reader."""

    camera_id: str
    image: np.ndarray  # BGR uint8, H x W x 3
    seq: int  # increases by one per frame the reader delivers (since the reader started)
    captured_at: float  # time.time() when the frame was decoded
    captured_mono: float  # time.monotonic() at the same moment
    #: Mean grey difference to the previous decoded frame (checks.temporal.MotionMeter),
    #: None when the reader does not measure it (first frame, keyframe-only decoding).
    motion: float | None = None


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One state transition of one fault on one camera (``streamwatch/events``)."""

    camera: str
    fault: str
    state: Literal["raised", "cleared"]
    confidence: float
    time: datetime
    raised_at: datetime | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "camera": self.camera,
            "fault": self.fault,
            "state": self.state,
            "confidence": round(float(self.confidence), 4),
            "time": iso(self.time),
        }
        if self.state == "cleared" and self.raised_at is not None:
            payload["raised_at"] = iso(self.raised_at)
        return payload


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """Retained per-camera summary (``streamwatch/<camera>/status``) plus per-fault ON/OFF."""

    camera: str
    name: str
    online: bool
    faults: dict[str, bool]  # every monitored fault -> active?
    updated: datetime
    model: str | None = None  # classifier version in use, None without a model

    def to_payload(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "name": self.name,
            "online": self.online,
            "faults": sorted(f for f, active in self.faults.items() if active),
            "updated": iso(self.updated),
            "model": self.model,
        }
