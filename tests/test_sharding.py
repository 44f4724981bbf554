"""Rendezvous sharding: every camera has exactly one owner; changing N moves few cameras."""

from __future__ import annotations

import collections

import pytest

from streamwatch.config import ConfigError, config_from_data
from streamwatch.sharding import ordinal_from_hostname, owner

IDS = [f"cam-{i:04d}" for i in range(3000)]


def test_balanced_and_minimal_movement():
    three = [owner(c, 3) for c in IDS]
    counts = collections.Counter(three)
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 0.28 * len(IDS)
    four = [owner(c, 4) for c in IDS]
    moved = sum(a != b for a, b in zip(three, four))
    assert moved / len(IDS) < 0.30  # ideal 1/4; modulo hashing would move ~3/4
    assert all(b == a for a, b in zip(three, four) if b != 3)  # cameras only move to the new replica


def test_config_partitions_cameras_exactly_once(tmp_path):
    cameras = [{"id": c, "url": "rtsp://h/x"} for c in IDS[:200]]
    seen = []
    for index in range(3):
        cfg = config_from_data({"cameras": cameras, "shard": {"count": 3, "index": index},
                                "state_dir": str(tmp_path)}, "c.yaml", tmp_path)
        assert cfg.state_dir == tmp_path / f"shard-{index}"
        assert cfg.mqtt.client_id.endswith(f"-shard{index}")
        seen += [c.id for c in cfg.enabled_cameras()]
    assert sorted(seen) == sorted(c["id"] for c in cameras)


def test_index_from_statefulset_hostname(monkeypatch, tmp_path):
    assert ordinal_from_hostname("streamwatch-2") == 2
    assert ordinal_from_hostname("laptop") is None
    monkeypatch.setenv("HOSTNAME", "streamwatch-1")
    cfg = config_from_data({"shard": {"count": 3}, "state_dir": str(tmp_path)}, "c.yaml", tmp_path)
    assert cfg.shard.index == 1
    monkeypatch.setenv("HOSTNAME", "laptop")
    with pytest.raises(ConfigError, match="shard.index: shard.index is not set"):
        config_from_data({"shard": {"count": 3}}, "c.yaml", tmp_path)
    with pytest.raises(ConfigError, match="shard: index 3 must be below count 3"):
        config_from_data({"shard": {"count": 3, "index": 3}}, "c.yaml", tmp_path)
