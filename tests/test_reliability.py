"""Reliability (issue 6): the real ``streamwatch run`` process through real faults.

* Cameras: a daemon watching several RTSP servers and files while one server (two, one per
  decoder) is SIGKILLed and restarted 10 times, one accepts TCP and says nothing, one answers
  RTSP but sends no media, one stops its media after a few seconds, one changes resolution
  mid-stream, one damages RTP packets, and a looping MPEG-TS file is truncated and has damaged
  bytes. Every other camera keeps being sampled (Prometheus ``streamwatch_samples_total``),
  ``signal_lost`` is raised and cleared where it should be, the process is never restarted,
  and its threads / open fds / RSS stay flat across the cycles (figures printed; see
  docs/reliability.md).
* Broker killed for 60 s under load (cameras whose picture freezes and thaws every loop, so
  transitions keep coming) behind a ``TcpProxy``; during the outage the daemon is SIGKILLed
  and restarted on the same state dir. Every transition is delivered once the broker is back,
  in order; duplicates only for events in flight at the cut; nothing spooled before the kill
  is lost.
* Disk full (a tiny tmpfs as state dir) and a state dir that turns read-only (read-only bind
  mount) at run time: clear error lines, MQTT keeps publishing, nothing on disk is corrupt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.broker import free_port, wait_until
from tests.support.daemon import write_config
from tests.support.media import ffmpeg_bin

REPO = Path(__file__).resolve().parents[1]


def _systemd_stop_timeout() -> float:
    """TimeoutStopSec of the shipped unit: how long systemd waits after SIGTERM before it kills."""
    unit = (REPO / "deploy" / "streamwatch.service").read_text()
    return float(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))


#: The daemon process must be gone before systemd would kill it. Its own shutdown (readers,
#: pipeline, sinks) has a 4.5 s budget and is checked on its log line separately; process exit
#: on top of it (interpreter finalisation with 9 cameras' decoders) took up to 3.6 s more on a
#: loaded 2-core CI machine, so a fixed 6 s here measured the machine, not the daemon.
STOP_LIMIT = _systemd_stop_timeout()


def _stopped_cleanly(daemon) -> None:
    """SIGTERM: the process exits within systemd's stop timeout, its shutdown within budget."""
    assert daemon.stop() < STOP_LIMIT
    stopped = [e for e in daemon.log_events() if e.get("event") == "daemon_stopped"]
    assert stopped and stopped[-1]["seconds"] <= 5.0, stopped

pytestmark = pytest.mark.slow


# -- helpers -----------------------------------------------------------------------------------


def proc_stats(pid: int) -> dict[str, float]:
    """Threads, open file descriptors and RSS (MB) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss_mb": round(rss_kb / 1024, 1),
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def samples(port: int) -> dict[str, float]:
    """``streamwatch_samples_total`` per camera."""
    out = {}
    for line in scrape(port).splitlines():
        if line.startswith('streamwatch_samples_total{camera="'):
            camera = line.split('"')[1]
            out[camera] = float(line.rsplit(" ", 1)[1])
    return out


def events_of(collector) -> list[dict]:
    return [json.loads(m.payload) for m in collector.on("streamwatch/events")]


def transitions(collector, camera: str, fault: str = "signal_lost") -> list[str]:
    return [e["state"] for e in events_of(collector) if e["camera"] == camera and e["fault"] == fault]


def config(tmp_path: Path, mqtt_port: int, cameras: list[dict], state_dir: Path | None = None, **extra) -> dict:
    data = {
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": f"sw-rel-{tmp_path.name}"},
        "state_dir": str(state_dir or tmp_path / "state"),
        "log": {"format": "json"},
        "model": {"enabled": False},
        "reservoir": {"enabled": False},
        "cameras": cameras,
    }
    data.update(extra)
    return data


def truncated_ts(src: Path, dst: Path) -> Path:
    """``src`` remuxed to MPEG-TS, cut at 55 % (mid-packet) with a run of damaged bytes at 30 %."""
    full = dst.with_suffix(".full.ts")
    subprocess.run([ffmpeg_bin(), "-y", "-loglevel", "error", "-i", str(src), "-c", "copy", "-f", "mpegts", str(full)],
                   check=True)
    data = bytearray(full.read_bytes())
    full.unlink()
    cut = int(len(data) * 0.55) + 77
    data = data[:cut]
    start = int(len(data) * 0.3)
    for i in range(start, start + 4000, 7):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


#: A clip that freezes and thaws once per loop: with the settings below every camera playing
#: it raises ``frozen`` and clears it again every 12 s, so transitions keep coming.
FLAP_CLIP = dict(seconds=12, freeze=(3, 9), content="pan", size=(320, 180), gop=25)
FLAP_CAMERA = {"loop": True, "sample_interval": 1.0, "frozen_after": 2,
               "faults": {"frozen": {"raise_after": 1, "clear_after": 1}}}


# -- cameras ---------------------------------------------------------------------------------------


def test_camera_faults_do_not_disturb_the_other_cameras_and_leak_nothing(
        tmp_path, clip_factory, rtsp_server_factory, broker, mqtt_collector, daemon_factory):
    small = clip_factory(seconds=8, content="pan", size=(320, 180), gop=25)
    larger = clip_factory(seconds=6, content="real", size=(480, 270), gop=25)
    servers = {
        "flap_cv": rtsp_server_factory(small),                   # killed/restarted, decode: all (OpenCV)
        "flap_av": rtsp_server_factory(small),                   # killed/restarted, keyframes (PyAV)
        "mute": rtsp_server_factory(small, mode="mute"),         # TCP accepted, never a word
        "silent": rtsp_server_factory(small, mode="silent"),     # RTSP answered up to PLAY, no media
        "stall": rtsp_server_factory(small, stall_after=4),      # media stops, connection stays open
        "reschange": rtsp_server_factory([small, larger]),       # 320x180 -> 480x270 -> ... mid-stream
        "corrupt": rtsp_server_factory(small, corrupt=0.03),     # 3 % of RTP packets damaged
    }
    truncated = truncated_ts(small, tmp_path / "truncated.ts")
    cameras = [{"id": cam, "url": s.url} for cam, s in servers.items()]
    cameras[0]["decode"] = "all"
    cameras += [{"id": "clean", "url": str(small), "loop": True},
                {"id": "truncated", "url": str(truncated), "loop": True}]
    healthy = ["reschange", "corrupt", "clean", "truncated"]
    dead = ["mute", "silent"]
    flapping = ["flap_cv", "flap_av"]
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/#"])
    port = free_port()
    cfg = config(tmp_path, broker.port, cameras, metrics_port=port,
                 defaults={"signal_timeout": 3, "sample_interval": 0.5})
    d = daemon_factory(write_config(tmp_path / "sw.yaml", cfg))
    pid = d.proc.pid

    for cam in flapping + ["reschange", "corrupt"]:
        assert d.wait_log("camera_connected", timeout=40, camera=cam), (cam, d.log_text()[-3000:])
    assert wait_until(lambda: all(transitions(collector, c) == ["raised"] for c in dead + ["stall"]), 40), (
        {c: transitions(collector, c) for c in dead + ["stall"]}, d.log_text()[-3000:])
    time.sleep(3)
    figures = [("start", proc_stats(pid))]
    before = samples(port)
    cycle_samples = []
    cycles = 6  # a leak of one thread or descriptor per cycle shows as 5 between cycle 1 and the last
    for cycle in range(1, cycles + 1):
        for cam in flapping:
            servers[cam].kill()
        assert wait_until(lambda: all(transitions(collector, c).count("raised") == cycle for c in flapping), 30), (
            cycle, {c: transitions(collector, c) for c in flapping}, d.log_text()[-3000:])
        for cam in flapping:
            servers[cam].start()
        assert wait_until(lambda: all(transitions(collector, c).count("cleared") == cycle for c in flapping), 60), (
            cycle, {c: transitions(collector, c) for c in flapping}, d.log_text()[-3000:])
        time.sleep(6)  # frames flow long enough (stable_after = 5 s) for the reconnect backoff to reset
        after = samples(port)
        cycle_samples.append({c: after.get(c, 0) - before.get(c, 0) for c in healthy})
        before = after
        assert d.alive() and d.proc.pid == pid
        figures.append((f"cycle {cycle}", proc_stats(pid)))

    print("\n  when        threads  fds  rss_mb")
    for label, s in figures:
        print(f"  {label:<10} {s['threads']:>8} {s['fds']:>4} {s['rss_mb']:>7}")
    print("  healthy-camera samples per cycle:", cycle_samples)

    # Every other camera kept being sampled in every cycle (sampling at 2/s; cycles last >= 5 s).
    for n, per_camera in enumerate(cycle_samples, 1):
        for cam, count in per_camera.items():
            assert count >= 3, (n, cam, cycle_samples)
    # signal_lost: one raised/cleared pair per cycle on the flapping cameras, raised once and kept on the
    # dead ones, never on the healthy ones.
    for cam in flapping:
        assert transitions(collector, cam) == ["raised", "cleared"] * cycles
    for cam in dead:
        assert transitions(collector, cam) == ["raised"]
    # The stalling server restarts its media for every new connection, so that camera comes
    # back after each read timeout and is lost again 4 s later: it flaps, raise/clear in turn.
    stall = transitions(collector, "stall")
    assert stall[:1] == ["raised"] and all(a != b for a, b in zip(stall, stall[1:])), stall
    for cam in healthy:
        assert transitions(collector, cam) == [], (cam, d.log_text()[-3000:])
    # Flat: threads and descriptors back where they were, memory not growing per cycle.
    first, last = figures[1][1], figures[-1][1]
    # (a reconnect in progress or the inference engine's pool may hold a few threads for a
    # moment; a leak of one per cycle would be 5)
    assert abs(last["threads"] - first["threads"]) <= 4, figures
    assert abs(last["fds"] - first["fds"]) <= 4, figures
    assert last["rss_mb"] - figures[2][1]["rss_mb"] < 40, figures
    # Damaged packets are skipped by the decoder, not answered with a reconnect.
    assert [e for e in d.log_events() if e.get("camera") == "corrupt" and e.get("event") == "camera_disconnected"] == []
    _stopped_cleanly(d)
    text = d.log_text()
    assert "Traceback" not in text
    assert text.count('"event": "daemon_started"') == 1


# -- broker outage under load, kill -9 during it -----------------------------------------------------


def test_broker_down_60s_under_load_and_daemon_killed_during_the_outage(
        tmp_path, clip_factory, broker, tcp_proxy, mqtt_collector, daemon_factory):
    clip = clip_factory(**FLAP_CLIP)
    proxy = tcp_proxy(broker.port)
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/events"])
    n_cams = 12
    cameras = [{"id": f"cam{i:02d}", "url": str(clip), **FLAP_CAMERA} for i in range(n_cams)]
    config_path = write_config(tmp_path / "sw.yaml", config(tmp_path, proxy.port, cameras))
    spool_path = tmp_path / "state" / "spool.sqlite3"
    first = daemon_factory(config_path)
    assert collector.wait_for(lambda c: len(c.on("streamwatch/events")) >= n_cams, 60), first.log_text()[-3000:]
    time.sleep(5)

    # The broker dies (SIGKILL) and the daemon cannot reach anything for 60 s.
    proxy.block()
    broker.kill()
    cut_at = len(collector.on("streamwatch/events"))
    outage_started = time.monotonic()
    time.sleep(30)
    # Kill -9 of the daemon in the middle of the outage: freeze it, read what it has spooled,
    # kill it, and start a new one on the same state dir.
    first.signal(signal.SIGSTOP)
    time.sleep(0.3)
    db = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    spooled = [json.loads(p)["id"] for (p,) in db.execute("SELECT payload FROM events ORDER BY key")]
    db.close()
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop()
    assert len(spooled) >= 2 * n_cams, len(spooled)  # the outage queued a backlog
    second_config = tmp_path / "sw-restarted.yaml"  # same config and state dir, its own log file
    shutil.copyfile(config_path, second_config)
    second = daemon_factory(second_config)
    assert second.wait_log("spool has undelivered events from a previous run", timeout=30), second.log_text()[-2000:]
    time.sleep(max(0.0, 60 - (time.monotonic() - outage_started)))
    broker.start()
    collector.wait_subscribed(2, timeout=20)
    proxy.unblock()
    outage = time.monotonic() - outage_started

    # paho's reconnect delay has grown to up to 30 s during the outage: wait for the reconnect.
    assert second.wait_log("mqtt connected", timeout=45), second.log_text()[-3000:]
    reconnected = time.monotonic() - outage_started
    time.sleep(12)  # the backlog drains and new transitions keep coming
    _stopped_cleanly(second)
    stopped = second.wait_log("mqtt sink stopped", timeout=1)
    assert stopped is not None and stopped["undelivered_events"] == 0, stopped
    time.sleep(1)

    delivered = events_of(collector)
    ids = [e["id"] for e in delivered]
    unique: dict[str, dict] = {}
    for e in delivered:
        unique.setdefault(e["id"], e)
    # Nothing spooled before the kill is lost.
    missing = [i for i in spooled if i not in unique]
    assert missing == [], f"{len(missing)} of {len(spooled)} spooled events lost"
    # Every transition either daemon logged arrived (one may sit between the log line and the
    # spool write at the moment of the SIGKILL).
    logged = [e for d in (first, second) for e in d.log_events() if e.get("event") in ("fault_raised", "fault_cleared")]
    def per_camera() -> str:
        lines = []
        for cam in sorted({e["camera"] for e in logged}):
            lg = [(e["event"][6:9], e["timestamp"][11:23]) for e in logged if e["camera"] == cam]
            dv = [(e["state"][:3], e["time"][11:23]) for e in unique.values() if e["camera"] == cam]
            lines.append(f"{cam}: logged {lg}\n       delivered {dv}")
        return "\n".join(lines)

    if not len(logged) - 1 <= len(unique) <= len(logged):
        print(per_camera())
    assert len(logged) - 1 <= len(unique) <= len(logged), (len(logged), len(unique))
    # In order: per camera and overall, first deliveries come in the order they happened.
    times = [e["time"] for e in unique.values()]
    assert times == sorted(times)
    for cam in {e["camera"] for e in unique.values()}:
        states = [e["state"] for e in unique.values() if e["camera"] == cam]
        assert all(a != b for a, b in zip(states, states[1:])), (cam, states)  # raised/cleared alternate
    # Duplicates (same id) only for events that were already delivered before the cut, i.e.
    # in flight when the connection broke; at most one window of max_inflight (20).
    dup_ids = {i for i in ids if ids.count(i) > 1}
    first_index = {i: ids.index(i) for i in dup_ids}
    assert all(idx < cut_at + 20 for idx in first_index.values()), (cut_at, first_index)
    assert len(dup_ids) <= 20
    print(f"\n  outage {outage:.0f} s (daemon reconnected {reconnected - outage:.1f} s after the broker was back); {len(spooled)} events spooled at the kill; {len(unique)} transitions "
          f"delivered ({len(ids)} messages, {len(dup_ids)} duplicated ids); {len(logged)} logged")


# -- disk full / read-only state dir -----------------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """An 8 MB tmpfs (root only); unmounted at teardown."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr}")
    yield mnt
    subprocess.run(["umount", "-R", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (65536, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def _check_not_corrupt(state: Path) -> None:
    db = sqlite3.connect(f"file:{state / 'spool.sqlite3'}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    if (state / "faults.json").exists():
        json.loads((state / "faults.json").read_text())  # whole, never half-written
    for index in state.glob("reservoir/*/index.json"):
        json.loads(index.read_text())


@pytest.mark.parametrize("failure", ["disk_full", "read_only"])
def test_state_dir_full_or_read_only_at_run_time(tmp_path, tmpfs, clip_factory, broker, mqtt_collector, daemon_factory,
                                                failure):
    clip = clip_factory(**FLAP_CLIP)
    state = tmpfs / "state"
    collector = mqtt_collector(broker.host, broker.port, topics=["streamwatch/events"])
    cameras = [{"id": f"cam{i}", "url": str(clip), **FLAP_CAMERA} for i in range(3)]
    # Without a model the reservoir keeps the frames of raised faults (frozen here).
    cfg = config(tmp_path, broker.port, cameras, state_dir=state,
                 reservoir={"enabled": True, "min_interval": 0, "max_mb": 50})
    d = daemon_factory(write_config(tmp_path / "sw.yaml", cfg))
    assert collector.wait_for(lambda c: len(c.on("streamwatch/events")) >= 3, 60), d.log_text()[-3000:]
    assert wait_until(lambda: any(state.glob("reservoir/*/faults/*/*.jpg")), 30), d.log_text()[-3000:]

    if failure == "disk_full":
        filler = _fill(tmpfs)
    else:
        _mount("--bind", str(state), str(state))
        _mount("-o", "remount,ro,bind", str(state))
    broken_at = len(collector.on("streamwatch/events"))
    logged_before = len([e for e in d.log_events() if e.get("event") in ("fault_raised", "fault_cleared")])
    time.sleep(30)  # a few freeze/thaw loops on three cameras
    assert d.alive()
    delivered = len(collector.on("streamwatch/events")) - broken_at
    logged = len([e for e in d.log_events() if e.get("event") in ("fault_raised", "fault_cleared")]) - logged_before
    assert logged >= 6 and delivered >= logged - 3, (logged, delivered)  # MQTT kept publishing
    errors = [e for e in d.log_events() if e.get("level") == "error"]
    kinds = {e["event"] for e in errors}
    assert "fault_state_not_saved" in kinds, kinds  # one line per transition that could not be saved
    assert "reservoir_write_failed" in kinds, kinds
    # Once per failure streak, not per frame (a write that fits between failures ends a streak).
    assert len([e for e in errors if e["event"] == "reservoir_write_failed"]) <= 3
    for e in errors:
        assert e.get("error") or e.get("path"), e  # says what and where
    print(f"\n  {failure}: {logged} transitions logged, {delivered} delivered; error lines:",
          {k: sum(1 for e in errors if e['event'] == k) for k in kinds})

    # The disk comes back: the next transitions are saved again; nothing on disk is corrupt.
    if failure == "disk_full":
        filler.unlink()
    else:
        subprocess.run(["umount", str(state)], check=True)
    saved_before = (state / "faults.json").stat().st_mtime_ns if (state / "faults.json").exists() else 0
    assert wait_until(lambda: (state / "faults.json").exists()
                      and (state / "faults.json").stat().st_mtime_ns != saved_before, 30)
    _stopped_cleanly(d)
    _check_not_corrupt(state)
    assert "Traceback" not in d.log_text()
