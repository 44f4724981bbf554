"""CameraReader against real H.264 clips and a real RTSP server process (tests/support/media.py).

Timing assertions are ratios or generous upper bounds on things that should be immediate;
nothing depends on the machine being fast.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from structlog.testing import capture_logs

from streamwatch.sources.backoff import Backoff
from streamwatch.sources.reader import CameraReader, ReaderStatus, normalise_image
from tests.support.media import free_port

PASSWORD = "Sup3rS3cretPw"
FPS = 25


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("reader-")]


@pytest.fixture
def readers():
    """Readers made through this are stopped at teardown, and no reader thread may survive."""
    made: list[CameraReader] = []

    def make(*args, **kwargs) -> CameraReader:
        reader = CameraReader(*args, **kwargs)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.stop(1.0)
    for reader in made:
        # A read blocked on a silent source ends at its read timeout (short in these tests).
        assert reader.stop(15.0), f"{reader} thread still running"
    assert wait_for(lambda: not reader_threads(), 5.0), reader_threads()


@pytest.fixture(scope="module")
def short_clip(clip_factory) -> Path:
    return clip_factory(seconds=2, size=(320, 180), fps=FPS, gop=FPS)


@pytest.fixture(scope="module")
def live_clip(clip_factory) -> Path:
    return clip_factory(seconds=6, size=(320, 180), fps=FPS, gop=FPS * 2)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.1, cap=0.4, jitter="none")


# -- backoff -------------------------------------------------------------------------------------


def test_backoff_grows_to_cap_and_resets():
    b = Backoff(initial=1.0, cap=10.0, factor=2.0, jitter="none")
    assert [b.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    b.reset()
    assert b.next_delay() == 1.0


@pytest.mark.parametrize("jitter", ["full", "decorrelated"])
def test_backoff_jitter_stays_within_bounds(jitter):
    b = Backoff(initial=0.5, cap=30.0, jitter=jitter, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    assert all(b.min_delay <= d <= 30.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # actually jittered (capped ones repeat)
    assert max(delays[-50:]) > 10  # reached the capped region
    with pytest.raises(ValueError):
        Backoff(jitter="sometimes")  # type: ignore[arg-type]


# -- frames -------------------------------------------------------------------------------------


def test_normalise_image_shapes():
    grey = np.full((4, 6), 7, np.uint8)
    out = normalise_image(grey)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8 and (out == 7).all()
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 2] = 200
    out = normalise_image(bgra)
    assert out.shape == (4, 6, 3) and (out[..., 2] == 200).all()
    assert normalise_image(np.zeros((4, 6, 1), np.uint8)).shape == (4, 6, 3)
    assert normalise_image(np.zeros((4, 6, 3), np.uint16)).dtype == np.uint8
    for bad in (None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 6, 2), np.uint8), np.zeros(5, np.uint8), "x"):
        assert normalise_image(bad) is None


# -- files ----------------------------------------------------------------------------------------


def test_file_plays_at_its_native_frame_rate(clip_factory, readers):
    """A 25 fps and a 10 fps clip, looping, each delivered at its own rate (measured as a ratio)."""
    clips = {25: clip_factory(seconds=4, size=(320, 180), fps=25), 10: clip_factory(seconds=4, size=(320, 180), fps=10)}
    rs = {fps: readers(f"fps{fps}", str(path), loop=True) for fps, path in clips.items()}
    for r in rs.values():
        r.start()
    assert wait_for(lambda: all(r.status().frames > 0 for r in rs.values()), 10)
    start = {fps: (r.status().frames, time.monotonic()) for fps, r in rs.items()}
    time.sleep(5.0)  # crosses a loop boundary of the 4 s clips
    for fps, r in rs.items():
        frames0, t0 = start[fps]
        rate = (r.status().frames - frames0) / (time.monotonic() - t0)
        assert 0.85 <= rate / fps <= 1.15, f"{fps} fps clip delivered at {rate:.1f} fps"
        status = r.status()
        assert status.connected and not status.ended and status.reconnects == 0


def test_loop_rewinds_and_non_loop_ends(short_clip, readers):
    looping = readers("loop", str(short_clip), loop=True)
    once = readers("once", str(short_clip), loop=False)
    with capture_logs() as logs:
        looping.start()
        once.start()
        assert wait_for(lambda: once.status().ended, 10), once.status()
        ended_frames = once.status().frames
        time.sleep(1.5)
    # 2 s at 25 fps: each frame at most once (a reader that falls behind may skip one), then
    # nothing more (no replay).
    assert 2 * FPS - 3 <= ended_frames <= 2 * FPS
    status = once.status()
    assert status.frames == ended_frames and status.ended and not status.connected
    assert once.latest().seq == ended_frames
    assert not once.running  # its thread has finished by itself
    # The looping reader went on past the end of the clip without counting reconnects.
    loop_status = looping.status()
    assert loop_status.frames > ended_frames + FPS // 2
    assert loop_status.connected and not loop_status.ended and loop_status.reconnects == 0
    events = [(e["camera"], e["event"]) for e in logs]
    assert events.count(("loop", "camera_connected")) == 1  # not one line per loop
    assert ("once", "camera_file_ended") in events


def test_slow_consumer_gets_only_the_newest_frame(live_clip, readers):
    reader = readers("slow", str(live_clip), loop=True)
    reader.start()
    assert wait_for(lambda: reader.latest() is not None, 10)
    seen = reader.latest().seq
    for _ in range(3):
        time.sleep(0.8)  # a consumer much slower than 25 fps
        frame = reader.latest()
        status = reader.status()
        # The slot holds the newest frame: its seq is (almost) the number delivered, and the
        # frames in between were overwritten rather than queued.
        assert status.frames - frame.seq <= 1
        assert frame.seq - seen >= 0.6 * 0.8 * FPS
        assert time.monotonic() - frame.captured_mono < 0.5
        assert frame.image.shape == (180, 320, 3) and frame.image.dtype == np.uint8
        assert reader.latest(newer_than=frame.seq) is None or reader.latest().seq > frame.seq
        seen = frame.seq


def test_missing_file_retries_without_log_spam(tmp_path, readers):
    reader = readers("nofile", str(tmp_path / "absent.mp4"), backoff=fast_backoff())
    with capture_logs() as logs:
        reader.start()
        assert wait_for(lambda: reader.status().reconnects >= 3, 5)
    status = reader.status()
    assert not status.connected and status.frames == 0 and "cannot open file" in status.last_error
    assert [e["event"] for e in logs] == ["camera_unavailable"]


def test_exception_in_thread_leads_to_reconnect(live_clip, readers, monkeypatch):
    import streamwatch.sources.reader as reader_module

    calls = {"n": 0}
    real = reader_module.normalise_image

    def flaky(image):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("decoder exploded")
        return real(image)

    monkeypatch.setattr(reader_module, "normalise_image", flaky)
    reader = readers("flaky", str(live_clip), loop=True, backoff=fast_backoff())
    with capture_logs() as logs:
        reader.start()
        assert wait_for(lambda: reader.status().frames >= 30, 10)
    assert reader.status().reconnects == 1 and reader.running
    assert any(e["event"] == "reader_error" and "decoder exploded" in e["error"] for e in logs)


# -- network -------------------------------------------------------------------------------------


def test_unreachable_camera_backs_off_and_logs_once(readers, capfd):
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    reader = readers("gone", url, backoff=Backoff(initial=0.1, cap=0.8, jitter="none"), open_timeout=2)
    fds = open_fds()
    with capture_logs() as logs:
        reader.start()
        time.sleep(2.5)
    status = reader.status()
    assert reader.stop(2.0)
    assert open_fds() <= fds  # failed opens leave no descriptor behind
    assert not status.connected and status.frames == 0 and status.last_error
    # Delays 0.1, 0.2, 0.4, 0.8, 0.8...: about 5 attempts in 2.5 s, not hundreds.
    assert 3 <= status.reconnects <= 8, status
    assert [e["event"] for e in logs] == ["camera_unavailable"]
    assert reader.latest() is None
    captured = capfd.readouterr()
    text = repr(logs) + repr(status) + captured.out + captured.err + repr(reader)
    assert PASSWORD not in text and "admin" not in text
    assert "rtsp://***@127.0.0.1" in logs[0]["url"]


def test_rtsp_server_killed_and_restarted(live_clip, rtsp_server_factory, readers, capfd):
    server = rtsp_server_factory(live_clip, user="admin", password=PASSWORD)
    reader = readers("cam", server.url, backoff=fast_backoff(), read_timeout=3, open_timeout=3)
    fds = open_fds()
    with capture_logs() as logs:
        reader.start()
        assert wait_for(lambda: reader.status().frames >= 10, 10), reader.status()
        assert reader.status().connected
        server.kill()
        assert wait_for(lambda: not reader.status().connected, 6), reader.status()
        frames_down = reader.status().frames
        time.sleep(1.0)  # several failed reconnects while the server is down
        failed_attempts = reader.status().reconnects
        assert failed_attempts >= 2
        server.start()  # same port
        assert wait_for(lambda: reader.status().frames >= frames_down + 10, 10), reader.status()
    status: ReaderStatus = reader.status()
    assert status.connected and status.last_error is None and status.reconnects >= failed_attempts
    assert reader.stop(3.0)
    assert open_fds() <= fds  # the dropped connection and the failed attempts leaked nothing
    events = [e["event"] for e in logs]
    # One line per state change, none per retry.
    assert events == ["camera_connected", "camera_disconnected", "camera_connected"], events
    assert logs[2]["failures"] >= 2
    captured = capfd.readouterr()
    assert PASSWORD not in repr(logs) + captured.out + captured.err


def test_rtsp_delivers_live_rate_and_newest_frame(live_clip, rtsp_server_factory, readers):
    server = rtsp_server_factory(live_clip)
    reader = readers("live", server.url)
    reader.start()
    assert wait_for(lambda: reader.status().frames > 0, 10)
    # After the first burst (FFmpeg's probe buffer), the stream arrives at its real-time rate.
    time.sleep(1.0)
    f0, t0 = reader.status().frames, time.monotonic()
    time.sleep(3.0)
    rate = (reader.status().frames - f0) / (time.monotonic() - t0)
    assert 0.8 <= rate / FPS <= 1.2, rate
    frame = reader.latest()
    assert time.monotonic() - frame.captured_mono < 0.5


def test_silent_server_times_out_and_reconnects(live_clip, rtsp_server_factory, readers):
    """A server that accepts and answers PLAY but never sends media is a failure, not a hang."""
    server = rtsp_server_factory(live_clip, mode="silent")
    reader = readers("mute", server.url, backoff=fast_backoff(), open_timeout=1.5, read_timeout=1.5)
    with capture_logs() as logs:
        reader.start()
        assert wait_for(lambda: reader.status().reconnects >= 1, 12), reader.status()
    status = reader.status()
    assert not status.connected and status.frames == 0 and status.last_error
    assert [e["event"] for e in logs] == ["camera_unavailable"]


def test_stop_is_prompt_and_leaves_no_thread(live_clip, rtsp_server_factory, tmp_path):
    server = rtsp_server_factory(live_clip)
    rs = [
        CameraReader("f", str(live_clip), loop=True),
        CameraReader("n", server.url),
        CameraReader("u", f"rtsp://127.0.0.1:{free_port()}/x", backoff=Backoff(5, 5, jitter="none")),
        CameraReader("m", str(tmp_path / "missing.mp4"), backoff=Backoff(5, 5, jitter="none")),
    ]
    for r in rs:
        r.start()
    assert wait_for(lambda: rs[0].status().frames > 0 and rs[1].status().frames > 0, 10)
    time.sleep(0.5)
    for r in rs:
        t0 = time.monotonic()
        assert r.stop(2.0), f"{r} did not stop"
        assert time.monotonic() - t0 < 2.0
        assert not r.status().connected
    assert wait_for(lambda: not reader_threads(), 2.0), reader_threads()
    # Stopping twice, or a reader never started, is harmless.
    assert rs[0].stop(0.1) and CameraReader("x", "rtsp://h/x").stop(0.1)


def test_stop_returns_within_timeout_while_a_read_is_blocked(live_clip, rtsp_server_factory):
    server = rtsp_server_factory(live_clip, mode="silent")
    reader = CameraReader("blocked", server.url, open_timeout=2, read_timeout=2)
    reader.start()
    time.sleep(0.5)  # inside the blocking open
    t0 = time.monotonic()
    finished = reader.stop(0.3)
    assert time.monotonic() - t0 < 1.0
    if not finished:
        # OpenCV cannot be interrupted from outside; the thread ends at its own timeout.
        assert wait_for(lambda: not reader.running, 6.0)
    assert not reader_threads()


def test_credentials_are_scrubbed_from_messages():
    reader = CameraReader("c", f"rtsp://admin:{PASSWORD}@10.0.0.1/s")
    msg = reader.scrub(f"error opening rtsp://admin:{PASSWORD}@10.0.0.1/s and http://u:p@x/y; pw {PASSWORD}")
    assert PASSWORD not in msg and "u:p@" not in msg and "rtsp://***@10.0.0.1/s" in msg
    assert PASSWORD not in repr(reader)


# -- PyAV keyframe-only reader (same API) ---------------------------------------------------------


def test_pyav_keyframes_only_file_one_frame_per_gop_in_real_time(clip_factory):
    from streamwatch.sources.pyav_reader import PyAVReader

    clip = clip_factory(seconds=3, size=(320, 180), fps=FPS, gop=FPS // 2)  # keyframe every 0.5 s
    reader = PyAVReader("kf", str(clip), loop=True)
    reader.start()
    try:
        assert wait_for(lambda: reader.status().frames > 0, 10)
        f0, t0 = reader.status().frames, time.monotonic()
        time.sleep(4.0)  # crosses a loop boundary
        rate = (reader.status().frames - f0) / (time.monotonic() - t0)
        assert 0.8 <= rate / 2.0 <= 1.2, rate  # two keyframes per second
        frame = reader.latest()
        assert frame.image.shape == (180, 320, 3) and getattr(frame, "motion", None) is None
        status = reader.status()
        assert status.connected and status.reconnects == 0 and not status.ended
    finally:
        assert reader.stop(2.0)


def test_pyav_non_loop_ends(short_clip):
    from streamwatch.sources.pyav_reader import PyAVReader

    reader = PyAVReader("kf-once", str(short_clip), keyframes_only=False)
    reader.start()
    try:
        assert wait_for(lambda: reader.status().ended, 10), reader.status()
        assert 2 * FPS - 3 <= reader.status().frames <= 2 * FPS
    finally:
        assert reader.stop(2.0)


def test_pyav_rtsp_reconnects_and_scrubs_credentials(live_clip, rtsp_server_factory, capfd):
    from streamwatch.sources.pyav_reader import PyAVReader

    server = rtsp_server_factory(live_clip, user="admin", password=PASSWORD)
    reader = PyAVReader("kf-net", server.url, backoff=fast_backoff(), read_timeout=3, open_timeout=3)
    with capture_logs() as logs:
        reader.start()
        try:
            assert wait_for(lambda: reader.status().frames >= 1, 10), reader.status()
            server.kill()
            assert wait_for(lambda: reader.status().reconnects >= 2, 8), reader.status()
            down = reader.status()
            # PyAV's own error text names the URL; it reaches status and logs scrubbed.
            assert down.last_error and PASSWORD not in down.last_error
            server.start()
            assert wait_for(lambda: reader.status().frames > down.frames, 10), reader.status()
            assert reader.status().connected
        finally:
            assert reader.stop(3.0)
    assert [e["event"] for e in logs] == ["camera_connected", "camera_disconnected", "camera_connected"]
    captured = capfd.readouterr()
    assert PASSWORD not in repr(logs) + captured.out + captured.err


# -- faults the test server can cause (more in issue 6) --------------------------------------------


def test_mute_server_and_mid_stream_resolution_change(clip_factory, rtsp_server_factory, readers):
    """A server that accepts TCP and never answers is 'unavailable'; a resolution change mid-stream
    keeps frames flowing (OpenCV rescales to the first size, PyAV delivers the new size)."""
    from streamwatch.sources.pyav_reader import PyAVReader

    small = clip_factory(seconds=2, size=(320, 180), fps=FPS, gop=FPS // 2)
    big = clip_factory(seconds=2, size=(480, 270), fps=FPS, gop=FPS // 2)
    changing = rtsp_server_factory([small, big])
    mute = rtsp_server_factory(small, mode="mute")
    cv_reader = readers("res-cv", changing.url, backoff=fast_backoff())
    av_reader = PyAVReader("res-av", changing.url, backoff=fast_backoff())
    mute_reader = readers("mute", mute.url, backoff=fast_backoff(), open_timeout=1, read_timeout=1)
    with capture_logs() as logs:
        for r in (cv_reader, av_reader, mute_reader):
            r.start()
        shapes: dict[str, set] = {"cv": set(), "av": set()}
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            for key, r in (("cv", cv_reader), ("av", av_reader)):
                frame = r.latest()
                if frame is not None:
                    shapes[key].add(frame.image.shape)
            time.sleep(0.05)
        assert av_reader.stop(3.0)
    assert shapes["av"] == {(180, 320, 3), (270, 480, 3)}
    assert shapes["cv"] and all(s[2] == 3 for s in shapes["cv"])
    assert cv_reader.status().connected and cv_reader.status().reconnects == 0
    mute_status = mute_reader.status()
    assert not mute_status.connected and mute_status.frames == 0 and mute_status.reconnects >= 1
    assert [e["event"] for e in logs if e["camera"] == "mute"] == ["camera_unavailable"]


def test_capture_options_gate_serialises_only_different_values(monkeypatch):
    import os

    import streamwatch.sources.reader as reader_module

    monkeypatch.setattr(reader_module, "_BASE_OPTIONS", "rtsp_transport;udp|max_delay;500000")
    monkeypatch.setenv(reader_module.OPTIONS_ENV, "")
    tcp = CameraReader("a", "rtsp://h/x")
    udp = CameraReader("b", "rtsps://h/x", rtsp_transport="udp")
    assert tcp._capture_options() == "max_delay;500000|rtsp_transport;tcp"
    assert udp._capture_options() == "max_delay;500000|rtsp_transport;udp"
    assert CameraReader("c", "/video.mp4")._capture_options() is None
    with pytest.raises(ValueError):
        CameraReader("d", "rtsp://h/x", rtsp_transport="http")

    gate = reader_module._EnvGate()
    assert gate.acquire("A") and gate.acquire("A") and gate.acquire(None)  # same value / don't care: shared
    assert os.environ[reader_module.OPTIONS_ENV] == "A"
    got_b = threading.Event()
    threading.Thread(target=lambda: gate.acquire("B") and got_b.set(), daemon=True).start()
    assert not got_b.wait(0.3)  # a different value waits for every "A" open to finish
    for _ in range(3):
        gate.release()
    assert got_b.wait(2.0) and os.environ[reader_module.OPTIONS_ENV] == "B"
    gate.release()
    stop = threading.Event()
    stop.set()
    assert gate.acquire("C") and not (gate.acquire("D", stop))  # a stopping reader gives up waiting
    gate.release()


@pytest.mark.slow
def test_ten_server_kill_restart_cycles_leak_nothing(clip_factory, rtsp_server_factory, readers):
    """Issue 6: RTSP server killed and restarted 10 times while two readers (OpenCV and PyAV
    keyframes) stream from it; both recover every time; threads and descriptors stay flat."""
    from streamwatch.sources.pyav_reader import PyAVReader

    clip = clip_factory(seconds=4, size=(320, 180), fps=FPS, gop=FPS // 2)
    server = rtsp_server_factory(clip)
    backoff = dict(initial=0.1, cap=0.3, jitter="none")
    cv_reader = readers("soak-cv", server.url, backoff=Backoff(**backoff), read_timeout=3, open_timeout=3)
    av_reader = PyAVReader("soak-av", server.url, backoff=Backoff(**backoff), read_timeout=3, open_timeout=3)
    both = (cv_reader, av_reader)
    for r in both:
        r.start()
    try:
        assert wait_for(lambda: all(r.status().frames for r in both), 10)
        fds, threads = open_fds(), threading.active_count()
        for cycle in range(10):
            before = [r.status().frames for r in both]
            assert wait_for(lambda: all(r.status().frames > f for r, f in zip(both, before)), 10), cycle
            server.kill()
            assert wait_for(lambda: not any(r.status().connected for r in both), 8), cycle
            server.start()
        assert wait_for(lambda: all(r.status().connected for r in both), 10)
        assert all(r.status().reconnects >= 10 for r in both)
        assert threading.active_count() <= threads
        assert open_fds() <= fds + 2  # a connection being set up at this instant
    finally:
        assert av_reader.stop(3.0)
