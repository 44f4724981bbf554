"""Exponential reconnect backoff with jitter.

``Backoff(initial=1.0, cap=60.0, factor=2.0, jitter="full")``:

* ``jitter="full"`` (default): the n-th delay is uniform in ``[0, min(cap, initial * factor**n)]``
  ("full jitter"), but never below ``min_delay`` so a dead camera is not hammered.
* ``jitter="decorrelated"``: ``min(cap, uniform(initial, previous * 3))`` ("decorrelated jitter").
* ``jitter="none"``: plain ``min(cap, initial * factor**n)``, deterministic (tests).

Spreading the retries keeps hundreds of cameras behind one dead switch from reconnecting in
lock-step when it comes back. ``reset()`` after frames flow again.
"""

from __future__ import annotations

import random
from typing import Literal

Jitter = Literal["full", "decorrelated", "none"]


class Backoff:
    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        jitter: Jitter = "full",
        *,
        min_delay: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap <= 0:
            raise ValueError("initial and cap must be > 0")
        if factor < 1:
            raise ValueError("factor must be >= 1")
        if jitter not in ("full", "decorrelated", "none"):
            raise ValueError(f"unknown jitter {jitter!r}; use 'full', 'decorrelated' or 'none'")
        self.initial = float(initial)
        self.cap = float(cap)
        self.factor = float(factor)
        self.jitter: Jitter = jitter
        #: Floor for jittered delays (default: a tenth of ``initial``).
        self.min_delay = min(self.cap, self.initial / 10 if min_delay is None else float(min_delay))
        self._rng = rng or random.Random()
        self.attempts = 0
        self._previous = self.initial

    def ceiling(self) -> float:
        """The un-jittered delay for the current attempt: ``min(cap, initial * factor**attempts)``."""
        try:
            return min(self.cap, self.initial * self.factor**self.attempts)
        except OverflowError:
            return self.cap

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; advances the attempt counter."""
        ceiling = self.ceiling()
        if self.jitter == "none":
            delay = ceiling
        elif self.jitter == "full":
            delay = max(self.min_delay, self._rng.uniform(0.0, ceiling))
        else:  # decorrelated
            delay = min(self.cap, self._rng.uniform(self.initial, max(self.initial, self._previous * 3)))
        self._previous = delay
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (call once the source delivers again)."""
        self.attempts = 0
        self._previous = self.initial

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, cap={self.cap}, factor={self.factor}, "
            f"jitter={self.jitter!r}, attempts={self.attempts})"
        )
