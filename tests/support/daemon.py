"""Run the real ``streamwatch run`` as a subprocess against a config written by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class DaemonProcess:
    """``streamwatch run --config`` with JSON logs captured to a file."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None, log_path: Path | None = None):
        self.config_path = config_path
        self.extra_env = env or {}
        self.log_path = log_path or config_path.with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamwatch.cli", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM and wait; returns the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return time.monotonic() - started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def wait_log(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.log_events():
                if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                    return entry
            time.sleep(0.1)
        return None


@pytest.fixture
def daemon_factory():
    """``daemon_factory(config_path) -> DaemonProcess`` (started); stopped at teardown."""
    made: list[DaemonProcess] = []

    def make(config_path: Path) -> DaemonProcess:
        d = DaemonProcess(config_path).start()
        made.append(d)
        return d

    yield make
    for d in made:
        if d.alive():
            d.stop()
