"""Per-camera, per-fault state machines with debounce and hysteresis.

A fault is raised after ``raise_after`` consecutive positive samples and cleared
after ``clear_after`` consecutive negative ones; a sample is positive when its
confidence reaches the fault's threshold. Between those edges nothing is
published, so a borderline signal cannot make a fault flap, and a raised fault
cannot be raised again before it has cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from streamwatch.config import EffectiveFault
from streamwatch.events import FaultEvent, parse_iso


@dataclass
class FaultState:
    settings: EffectiveFault
    active: bool = False
    positives: int = 0
    negatives: int = 0
    raised_at: datetime | None = None
    #: Highest confidence seen in the current positive run (reported on raise).
    peak: float = 0.0

    def observe(self, camera: str, fault: str, confidence: float, now: datetime) -> FaultEvent | None:
        """Feed one sample's confidence; returns the transition it caused, if any."""
        if confidence >= self.settings.threshold:
            self.positives += 1
            self.negatives = 0
            self.peak = max(self.peak, confidence) if self.positives > 1 else confidence
            if not self.active and self.positives >= self.settings.raise_after:
                self.active, self.raised_at = True, now
                return FaultEvent(camera, fault, "raised", self.peak, now)
        else:
            self.negatives += 1
            self.positives = 0
            if self.active and self.negatives >= self.settings.clear_after:
                raised_at, self.active, self.raised_at = self.raised_at, False, None
                return FaultEvent(camera, fault, "cleared", confidence, now, raised_at=raised_at)
        return None


@dataclass
class CameraState:
    """All fault state machines of one camera."""

    camera: str
    faults: dict[str, FaultState] = field(default_factory=dict)

    @classmethod
    def create(cls, camera: str, settings: dict[str, EffectiveFault]) -> CameraState:
        return cls(camera, {name: FaultState(s) for name, s in settings.items() if s.enabled})

    def observe(self, confidences: dict[str, float], now: datetime) -> list[FaultEvent]:
        """Feed one sample (fault -> confidence); faults not named are left untouched.

        Inside a fault's suppression window (local time) its samples count as negative.
        """
        events = []
        local = now.astimezone()
        minute = local.hour * 60 + local.minute
        for fault, confidence in confidences.items():
            state = self.faults.get(fault)
            if state is not None:
                if state.settings.suppress and state.settings.suppressed_at(minute):
                    confidence = 0.0
                event = state.observe(self.camera, fault, confidence, now)
                if event is not None:
                    events.append(event)
        return events

    def active(self) -> dict[str, bool]:
        return {name: s.active for name, s in self.faults.items()}

    def restore(self, active: dict[str, str]) -> None:
        """Re-open faults that were raised before a restart (fault -> ISO raised_at)."""
        for fault, raised_at in active.items():
            state = self.faults.get(fault)
            if state is not None:
                state.active = True
                state.raised_at = parse_iso(raised_at)
                state.positives = state.settings.raise_after
