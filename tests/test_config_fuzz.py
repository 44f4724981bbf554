"""Property tests: no config, however broken, crashes validation with anything but ConfigError."""

from __future__ import annotations

import subprocess
import sys

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamwatch.config import ConfigError, config_from_data, load_config

KEYS = [
    "mqtt", "host", "port", "username", "password", "password_file", "password_env", "tls", "enabled", "ca_file",
    "cert_file", "key_file", "insecure", "client_id", "topic_prefix", "qos", "keepalive", "discovery", "prefix",
    "defaults", "sample_interval", "signal_timeout", "frozen_after", "frozen_noise_floor", "rtsp_transport",
    "faults", "frozen", "blurred", "monochrome", "signal_lost", "threshold", "raise_after", "clear_after",
    "suppress", "cameras", "id", "url", "name", "loop", "model", "path", "threads", "batch_size", "max_wait",
    "log", "level", "format", "state_dir", "spool", "max_events", "reservoir", "max_mb", "metrics_port",
    "bogus", "", "1",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["rtsp://u:p@h/x", "x.mp4", "00:00-25:00", "20:00-06:00", "tcp", "-1"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.integers(-3, 3)), children, max_size=5),
    ),
    max_leaves=25,
)
configs = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_data_gives_config_or_config_error(tmp_path_factory, data):
    base = tmp_path_factory.getbasetemp()
    try:
        config_from_data(data, "fuzz.yaml", base)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_config_or_config_error(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz-text.yaml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


@settings(max_examples=5, deadline=None)
@given(configs)
def test_cli_never_prints_a_traceback(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-cli.yaml"
    path.write_text(yaml.safe_dump(data))
    for args in (["check-config", str(path)], ["run", "--config", str(path)]):
        if args[0] == "run":
            # Only run configs that fail validation: a valid one would start a daemon.
            try:
                load_config(path)
                continue
            except ConfigError:
                pass
        proc = subprocess.run([sys.executable, "-m", "streamwatch.cli", *args], capture_output=True, text=True,
                              timeout=60)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert proc.returncode in (0, 2)
