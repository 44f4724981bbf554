"""Spread cameras over replicas with rendezvous (highest-random-weight) hashing.

Every replica computes the same owner for every camera from the camera id alone,
so N replicas sharing one config watch each camera exactly once without talking
to each other, and changing N moves only the cameras whose owner changes
(about 1/N of them), never a reshuffle of all.
"""

from __future__ import annotations

import hashlib
import os
import re


def _weight(camera_id: str, replica: int) -> int:
    digest = hashlib.blake2b(f"{camera_id}\x00{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(camera_id: str, count: int) -> int:
    """Index (0..count-1) of the replica that watches ``camera_id``."""
    return max(range(count), key=lambda replica: _weight(camera_id, replica))


def ordinal_from_hostname(hostname: str | None = None) -> int | None:
    """StatefulSet pods are named ``<set>-<ordinal>``; None if the name has no ordinal."""
    name = hostname if hostname is not None else os.environ.get("HOSTNAME", "")
    match = re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else None
