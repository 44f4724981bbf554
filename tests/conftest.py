"""Shared fixtures: a real Mosquitto broker (tests/support/broker.py) and real
encoded video / RTSP servers made with ffmpeg (tests/support/media.py)."""

pytest_plugins = ["tests.support.broker", "tests.support.media", "tests.support.daemon"]
