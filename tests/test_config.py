"""Config validation: every error names file, key path and problem; secrets are masked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamwatch.config import ConfigError, load_config, mask_url, masked_dump


def write(tmp_path: Path, text: str, name: str = "streamwatch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a video; existence is all config checks")
    return path


BAD_CONFIGS = [
    ("cameras: [{id: a, url: x.mp4, colour: red}]", "cameras[0].colour", "unknown key"),
    ("mqtt: {hots: localhost}", "mqtt.hots", "unknown key"),
    ("mqtt: {port: 70000}", "mqtt.port", "less than or equal to 65535"),
    ("mqtt: {qos: 3}", "mqtt.qos", "Input should be 0, 1 or 2"),
    ("cameras: [{id: 'Front Door', url: clip.mp4}]", "cameras[0].id", "must be a slug"),
    ("cameras: [{id: a, url: clip.mp4}, {id: a, url: clip.mp4}]", "cameras", "duplicate camera id 'a'"),
    ("cameras: [{id: a, url: 'ftp://h/x'}]", "cameras[0].url", "unsupported URL scheme"),
    ("cameras: [{id: a, url: clip.mp4}, {id: b, url: nowhere.mp4}]", "cameras[1].url", "video file not found"),
    ("cameras: [{id: a}]", "cameras[0].url", "Field required"),
    ("cameras: [{id: a, url: clip.mp4, sample_interval: 0}]", "cameras[0].sample_interval", "greater than 0"),
    ("cameras: [{id: a, url: clip.mp4, faults: {blur: {}}}]", "cameras[0].faults", "unknown fault blur"),
    ("defaults: {faults: {frozen: {threshold: 2}}}", "defaults.faults.frozen.threshold", "less than or equal to 1"),
    ("defaults: {faults: {frozen: {raise_after: 0}}}", "defaults.faults.frozen.raise_after", "greater than or equal to 1"),
    ("mqtt: {password: a, password_file: b}", "mqtt", "give only one of"),
    ("mqtt: {tls: {enabled: true, ca_file: /nonexistent/ca.pem}}", "mqtt.tls.ca_file", "file not found"),
    ("mqtt: {tls: {cert_file: /x}}", "mqtt.tls", "cert_file and key_file must be given together"),
    ("cameras: [{id: a, url: clip.mp4, masks: [{x: 0.8, y: 0, width: 0.3, height: 0.1}]}]", "cameras[0].masks[0]",
     "must be at most 1"),
    ("cameras: [{id: a, url: clip.mp4, masks: [{x: 0, y: 0, width: 0.9, height: 0.9}]}]", "cameras[0].masks[0]",
     "at most half of the frame"),
    ("cameras: [{id: a, url: clip.mp4, masks: [{x: 0.1, y: 0.1, width: 0}]}]", "cameras[0].masks[0].width",
     "greater than 0"),
    ("cameras: [{id: a, url: clip.mp4, masks: [{x: 0.1, y: 0.1, width: 0.1}]}]", "cameras[0].masks[0].height",
     "Field required"),
    ("cameras: {id: a}", "cameras", "valid list"),
    ("- just\n- a list", "", "top level must be a mapping"),
    ("cameras: [{id: a, url: clip.mp4", "", "invalid YAML: line"),
]


@pytest.mark.parametrize("text,key,problem", BAD_CONFIGS)
def test_bad_config_names_file_key_and_problem(tmp_path, clip, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    prefix = f"{path}: {key}: " if key else f"{path}: "
    assert any(line.startswith(prefix) and problem in line for line in message.splitlines()), message


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_yaml_bomb_and_huge_file_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_config(write(tmp_path, bomb))
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 2_000_000)
    with pytest.raises(ConfigError, match="limited to"):
        load_config(huge)


def test_effective_settings_merge_defaults_and_camera(tmp_path, clip):
    path = write(
        tmp_path,
        """
        defaults:
          sample_interval: 2
          faults: {monochrome: {threshold: 0.9}, blurred: {enabled: false}}
        cameras:
          - {id: gate, url: clip.mp4, faults: {monochrome: {raise_after: 7}}}
          - {id: yard, url: clip.mp4, sample_interval: 0.5, enabled: false}
        """,
    )
    config = load_config(path)
    gate, yard = config.cameras
    assert gate.url == str(clip)  # relative to the config file's folder
    faults = config.fault_settings(gate)
    assert faults["monochrome"].threshold == 0.9 and faults["monochrome"].raise_after == 7
    assert faults["monochrome"].clear_after == 5
    assert faults["blurred"].enabled is False
    assert config.camera_value(gate, "sample_interval") == 2
    assert config.camera_value(yard, "sample_interval") == 0.5
    assert [c.id for c in config.enabled_cameras()] == ["gate"]


def test_secrets_masked(tmp_path):
    config = load_config(
        write(tmp_path, "mqtt: {username: u, password: hunter2}\ncameras: [{id: a, url: 'rtsp://admin:s3cret@10.0.0.5:554/live'}]")
    )
    dump = str(masked_dump(config))
    assert "hunter2" not in dump and "s3cret" not in dump and "admin" not in dump
    assert "rtsp://***@10.0.0.5:554/live" in dump
    assert mask_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_password_sources(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-file\n")
    config = load_config(write(tmp_path, "mqtt: {password_file: pw}"))
    assert config.mqtt.resolve_password() == "from-file"
    monkeypatch.setenv("SW_TEST_PW", "from-env")
    config = load_config(write(tmp_path, "mqtt: {password_env: SW_TEST_PW}"))
    assert config.mqtt.resolve_password() == "from-env"


def test_check_config_cli_exit_codes(tmp_path, clip):
    good = write(tmp_path, "cameras: [{id: a, url: 'rtsp://u:topsecret@h/x'}]", "good.yaml")
    bad = write(tmp_path, "cameras: [{id: a, url: clip.mp4, typo: 1}]", "bad.yaml")
    ok = subprocess.run([sys.executable, "-m", "streamwatch.cli", "check-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "topsecret" not in ok.stdout and "rtsp://***@h/x" in ok.stdout
    err = subprocess.run([sys.executable, "-m", "streamwatch.cli", "check-config", str(bad)], capture_output=True, text=True)
    assert err.returncode == 2
    assert f"{bad}: cameras[0].typo: unknown key" in err.stderr
    assert "Traceback" not in err.stderr
