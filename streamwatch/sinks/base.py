"""The interface every alert sink (MQTT, log, ...) offers to the daemon."""

from __future__ import annotations

from typing import Protocol

from streamwatch.config import CameraConfig
from streamwatch.events import CameraStatus, FaultEvent


class AlertSink(Protocol):
    """Receives transitions and state from the daemon. Calls never block on the network."""

    def start(self) -> None:
        """Begin delivering (connect in the background)."""

    def set_cameras(self, cameras: list[CameraConfig], faults: dict[str, list[str]]) -> None:
        """The full set of monitored cameras and each one's enabled faults.

        Announces new ones (e.g. Home Assistant discovery) and clears the retained
        topics of cameras no longer present. Called at start and on every reload.
        """

    def publish_event(self, event: FaultEvent) -> None:
        """Deliver a transition at least once, in order, surviving broker outages and restarts."""

    def publish_status(self, status: CameraStatus) -> None:
        """Latest-wins retained state of one camera; re-published on reconnect."""

    def stop(self, timeout: float = 3.0) -> None:
        """Flush what can be flushed within ``timeout``, persist the rest, disconnect."""
