"""Debounce and hysteresis of the per-fault state machines."""

from datetime import datetime, timedelta, timezone

from streamwatch.config import EffectiveFault
from streamwatch.state import CameraState

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(values, raise_after=3, clear_after=5, threshold=0.6):
    state = CameraState.create("cam", {"blurred": EffectiveFault(enabled=True, threshold=threshold,
                                                                  raise_after=raise_after, clear_after=clear_after)})
    events = []
    for i, v in enumerate(values):
        for e in state.observe({"blurred": v}, T0 + timedelta(seconds=i)):
            events.append((i, e.state, round(e.confidence, 2), e.raised_at))
    return events, state


def test_raise_after_consecutive_positives_only():
    events, _ = run([0.9, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.95])
    assert events == [(8, "raised", 0.95, None)]


def test_clear_after_consecutive_negatives_and_no_flapping():
    seq = [0.9] * 3 + [0.1, 0.1, 0.1, 0.1, 0.9] + [0.1] * 5
    events, state = run(seq)
    assert [(i, s) for i, s, _, _ in events] == [(2, "raised"), (12, "cleared")]
    assert events[1][3] == T0 + timedelta(seconds=2)  # cleared event carries raised_at
    assert not state.active()["blurred"]


def test_no_duplicate_raise_while_active():
    events, _ = run([0.9] * 50)
    assert len(events) == 1


def test_threshold_is_inclusive_and_per_fault():
    events, _ = run([0.6] * 3, threshold=0.6)
    assert len(events) == 1
    events, _ = run([0.59] * 10, threshold=0.6)
    assert events == []


def test_disabled_fault_is_not_tracked():
    state = CameraState.create("cam", {"blurred": EffectiveFault(enabled=False, threshold=0.5, raise_after=1, clear_after=1)})
    assert state.observe({"blurred": 1.0}, T0) == []
    assert state.active() == {}


def test_restore_keeps_fault_open_until_cleared():
    state = CameraState.create("cam", {"blurred": EffectiveFault(enabled=True, threshold=0.5, raise_after=3, clear_after=2)})
    state.restore({"blurred": "2026-01-01T00:00:00.000Z"})
    assert state.observe({"blurred": 0.9}, T0) == []  # no second raise after a restart
    events = state.observe({"blurred": 0.1}, T0) + state.observe({"blurred": 0.1}, T0)
    assert [e.state for e in events] == ["cleared"] and events[0].raised_at == T0


def test_suppression_window_counts_as_negative():
    fault = EffectiveFault(enabled=True, threshold=0.5, raise_after=1, clear_after=1, suppress=("20:00-06:00",))
    assert fault.suppressed_at(23 * 60) and fault.suppressed_at(5 * 60 + 59)
    assert not fault.suppressed_at(6 * 60) and not fault.suppressed_at(12 * 60)
    state = CameraState.create("cam", {"monochrome": fault})
    night = datetime(2026, 1, 1, 23, 0).astimezone()
    day = datetime(2026, 1, 1, 12, 0).astimezone()
    assert state.observe({"monochrome": 1.0}, night) == []
    assert [e.state for e in state.observe({"monochrome": 1.0}, day)] == ["raised"]
