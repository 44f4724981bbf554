"""Model registry: atomic promotion with checksums, history, rollback; CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamwatch.model.registry import ModelRegistry, RegistryError


def fake_model(path, content: bytes):
    path.write_bytes(content)
    return path


def test_promote_keep_and_rollback(tmp_path):
    reg = ModelRegistry(tmp_path / "models", keep=3)
    assert reg.current() is None and reg.current_path() is None
    for i in range(5):
        reg.promote(fake_model(tmp_path / f"c{i}.onnx", f"model {i}".encode() * 20), f"v{i}", {"base": {"accuracy": 0.9 + i / 100}})
    assert [e.version for e in reg.entries()] == ["v2", "v3", "v4"]
    assert not (tmp_path / "models" / "v0.onnx").exists()  # pruned
    assert reg.current().version == "v4"
    assert reg.rollback().version == "v3"
    assert reg.current().version == "v3"
    assert reg.rollback("v2").version == "v2"
    with pytest.raises(RegistryError, match="no earlier"):
        reg.rollback()
    with pytest.raises(RegistryError, match="unknown model version"):
        reg.rollback("v9")
    with pytest.raises(RegistryError, match="already exists"):
        reg.promote(tmp_path / "c4.onnx", "v4")


def test_tampered_model_refused(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    reg.promote(fake_model(tmp_path / "a.onnx", b"a" * 100), "va")
    reg.promote(fake_model(tmp_path / "b.onnx", b"b" * 100), "vb")
    (tmp_path / "models" / "va.onnx").write_bytes(b"a" * 50)  # truncated behind our back
    with pytest.raises(RegistryError, match="checksum mismatch"):
        reg.rollback("va")
    assert reg.current().version == "vb"


def test_corrupt_registry_is_a_clear_error(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable model registry"):
        ModelRegistry(tmp_path / "models").entries()


def test_model_cli_list_and_rollback(tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {state}\n")
    reg = ModelRegistry(state / "models")
    reg.promote(fake_model(tmp_path / "a.onnx", b"a" * 100), "site-1")
    reg.promote(fake_model(tmp_path / "b.onnx", b"b" * 100), "site-2")
    run = lambda *a: subprocess.run([sys.executable, "-m", "streamwatch.cli", "model", *a, "--config", str(config)],
                                    capture_output=True, text=True, timeout=60)
    listed = run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["current"] == "site-2"
    back = run("rollback")
    assert back.returncode == 0 and "site-1" in back.stdout
    assert "* site-1" in run("list").stdout
    assert run("rollback").returncode == 2
