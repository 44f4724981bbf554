"""The durable event spool: order, bound, crash safety, and degrading when the disk fails.

Failures are real: ``kill -9`` of a writing process, a read-only directory (with root's
override capability dropped when the tests run as root), and a full disk simulated with
RLIMIT_FSIZE (the kernel refuses to grow the file, exactly as on a full filesystem).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamwatch.sinks.spool import Spool

REPO = Path(__file__).resolve().parents[1]


def keys_and_ids(spool: Spool, limit: int = 1_000_000) -> tuple[list[int], list[int]]:
    rows = spool.peek(limit)
    return [k for k, _ in rows], [p["i"] for _, p in rows]


def test_fifo_put_peek_ack(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", 100)
    keys = [spool.put({"i": i, "text": "é✓"}) for i in range(10)]
    assert keys == sorted(keys) and len(set(keys)) == 10
    assert len(spool) == 10
    rows = spool.peek(3)
    assert [p["i"] for _, p in rows] == [0, 1, 2]
    assert rows[0][1]["text"] == "é✓"
    spool.ack(rows[1][0])  # out-of-order ack is allowed
    assert keys_and_ids(spool, 3)[1] == [0, 2, 3]
    assert [p["i"] for _, p in spool.peek(2, after=keys[5])] == [6, 7]
    spool.ack_many(keys[:5])
    spool.ack(keys[0])  # already acked: ignored
    spool.ack(999_999)  # unknown: ignored
    assert len(spool) == 5
    assert keys_and_ids(spool)[1] == [5, 6, 7, 8, 9]
    assert spool.peek(0) == []
    spool.close()
    spool.close()  # idempotent


def test_survives_reopen_and_keys_never_reused(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, 100)
    for i in range(5):
        spool.put({"i": i})
    last = spool.peek(10)[-1][0]
    spool.ack_many(k for k, _ in spool.peek(3))
    spool.close()
    again = Spool(path, 100)
    assert again.durable
    assert keys_and_ids(again)[1] == [3, 4]
    again.ack_many(k for k, _ in again.peek(10))
    assert again.put({"i": 5}) > last, "keys grow across restarts, even when the spool was empty"
    again.close()


def test_an_empty_spool_is_still_truthy(tmp_path):
    assert Spool(tmp_path / "s.sqlite3", 10)


KILL_CHILD = r"""
import sys
from pathlib import Path
from streamwatch.sinks.spool import Spool
spool = Spool(Path(sys.argv[1]), 1_000_000)
i = 0
while True:
    spool.put({"i": i, "pad": "x" * 100})
    print(i, flush=True)  # printed only after put() returned: this event must survive
    i += 1
"""


def test_kill_9_loses_nothing_already_put(tmp_path):
    path = tmp_path / "s.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert child.stdout is not None
    confirmed = -1
    for line in child.stdout:
        if line.strip().isdigit():
            confirmed = int(line)
            if confirmed >= 300:
                break
    child.send_signal(signal.SIGKILL)
    child.wait(5)
    for line in child.stdout:  # lines already written before the kill count too
        if line.strip().isdigit():
            confirmed = int(line)
    spool = Spool(path, 1_000_000)
    ids = keys_and_ids(spool)[1]
    assert ids[: confirmed + 1] == list(range(confirmed + 1))
    assert ids == list(range(len(ids)))  # nothing half-written, nothing out of order
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_bound_drops_oldest_with_one_warning_per_put(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", 10)
    with structlog.testing.capture_logs() as logs:
        for i in range(25):
            spool.put({"i": i})
    assert len(spool) == 10
    assert keys_and_ids(spool)[1] == list(range(15, 25))
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 15 and all(e["dropped"] == 1 for e in warnings)
    assert warnings[-1]["dropped_total"] == 15 == spool.dropped_total


def test_smaller_bound_on_restart_trims_once(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, 100)
    for i in range(50):
        spool.put({"i": i})
    spool.close()
    with structlog.testing.capture_logs() as logs:
        spool = Spool(path, 20)
    assert keys_and_ids(spool)[1] == list(range(30, 50))
    assert [e["dropped"] for e in logs if e["log_level"] == "warning"] == [30]


def test_unusable_path_degrades_to_bounded_memory_with_one_error(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with structlog.testing.capture_logs() as logs:
        spool = Spool(blocker / "spool.sqlite3", 5)
        for i in range(8):
            spool.put({"i": i})
        spool.ack(spool.peek(1)[0][0])
    assert not spool.durable
    assert keys_and_ids(spool)[1] == [4, 5, 6, 7]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "memory" in errors[0]["event"] and errors[0]["path"].endswith("spool.sqlite3")


RO_CHILD = r"""
import sys, json
from pathlib import Path
import structlog
from streamwatch.sinks.spool import Spool
with structlog.testing.capture_logs() as logs:
    spool = Spool(Path(sys.argv[1]), 100)
    for i in range(3):
        spool.put({"i": i})
errors = [e for e in logs if e["log_level"] == "error"]
print(json.dumps({"durable": spool.durable, "ids": [p["i"] for _, p in spool.peek(10)],
                  "errors": [e["event"] for e in errors], "left": [e["left_in_file"] for e in errors]}))
"""


def _unprivileged(cmd: list[str]) -> list[str]:
    """Run ``cmd`` without root's permission override, so a read-only directory is read-only."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only for the test")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--", *cmd]


@pytest.mark.parametrize("existing_file", [False, True])
def test_read_only_state_directory_degrades_to_memory(tmp_path, existing_file):
    import json

    state = tmp_path / "state"
    state.mkdir()
    if existing_file:  # a spool from a previous run, then the directory became read-only
        old = Spool(state / "spool.sqlite3", 100)
        for i in range(7):
            old.put({"i": 100 + i})
        old.close()
    state.chmod(0o555)
    try:
        out = subprocess.run(
            _unprivileged([sys.executable, "-c", RO_CHILD, str(state / "spool.sqlite3")]),
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )
    finally:
        state.chmod(0o755)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["durable"] is False and result["ids"] == [0, 1, 2]
    assert len(result["errors"]) == 1 and "memory" in result["errors"][0]
    # Events of the earlier run stay in the file (not delivered twice), and the line says so.
    assert result["left"] == [7 if existing_file else 0]
    if existing_file:
        assert len(Spool(state / "spool.sqlite3", 100)) == 7


FULL_CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
import structlog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG like ENOSPC, not a signal
from streamwatch.sinks.spool import Spool
path = Path(sys.argv[1])
spool = Spool(path, 100_000)
for i in range(20):
    spool.put({"i": i})
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 16384, resource.RLIM_INFINITY))
with structlog.testing.capture_logs() as logs:
    for i in range(20, 1000):
        spool.put({"i": i, "pad": "x" * 200})
print(json.dumps({"durable": spool.durable, "ids": [p["i"] for _, p in spool.peek(100_000)],
                  "errors": len([e for e in logs if e["log_level"] == "error"])}))
"""


def test_disk_full_mid_run_degrades_keeping_every_event(tmp_path):
    import json

    path = tmp_path / "spool.sqlite3"
    out = subprocess.run([sys.executable, "-c", FULL_CHILD, str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["durable"] is False
    assert result["ids"] == list(range(1000)), "events on disk before the failure are kept, in order"
    assert result["errors"] == 1
    # What reached the disk is intact.
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "spool.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path, 10)
    assert spool.durable and len(spool) == 0
    spool.put({"i": 1})
    assert len(list(tmp_path.glob("spool.sqlite3.corrupt-*"))) == 1


def test_threads_put_while_another_acks(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", 100_000)
    per_thread, writers = 200, 4
    acked: list[int] = []
    done = threading.Event()

    def consume() -> None:
        last = 0
        while not (done.is_set() and len(spool) == 0):
            rows = spool.peek(50, after=last)
            if rows:
                last = rows[-1][0]
                spool.ack_many(k for k, _ in rows)
                acked.extend(p["w"] * 10_000 + p["i"] for _, p in rows)

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [
        threading.Thread(target=lambda w=w: [spool.put({"w": w, "i": i}) for i in range(per_thread)])
        for w in range(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    consumer.join(30)
    assert len(acked) == per_thread * writers == len(set(acked))
    for w in range(writers):  # each writer's events come out in its order
        mine = [x for x in acked if x // 10_000 == w]
        assert mine == sorted(mine)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.integers(0, 3)),
            st.tuples(st.just("ack"), st.integers(0, 5)),
            st.tuples(st.just("reopen"), st.just(0)),
        ),
        max_size=40,
    ),
    bound=st.integers(1, 6),
    on_disk=st.booleans(),
)
def test_behaves_like_a_bounded_deque(tmp_path_factory, ops, bound, on_disk):
    """Model check: any sequence of puts, acks of the oldest and restarts matches a deque(maxlen)."""
    base = tmp_path_factory.mktemp("model")
    path = base / "s.sqlite3" if on_disk else base / "file" / "s.sqlite3"
    if not on_disk:
        (base / "file").write_text("forces the memory fallback")
    model: deque[int] = deque(maxlen=bound)
    counter = 0
    spool = Spool(path, bound)
    for op, n in ops:
        if op == "put":
            for _ in range(n + 1):
                spool.put({"i": counter})
                model.append(counter)
                counter += 1
        elif op == "ack":
            for key, _ in spool.peek(n):
                spool.ack(key)
                model.popleft()
        elif on_disk:
            spool.close()
            spool = Spool(path, bound)
        assert len(spool) == len(model)
        assert keys_and_ids(spool)[1] == list(model)
    spool.close()


RECOVER_CHILD = r"""
import json, resource, signal, sys, time
from pathlib import Path
import structlog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from streamwatch.sinks.spool import Spool
path = Path(sys.argv[1])
spool = Spool(path, 100_000, retry_every=0.2)
for i in range(20):
    spool.put({"i": i})
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 16384, resource.RLIM_INFINITY))
with structlog.testing.capture_logs() as logs:
    for i in range(20, 400):
        spool.put({"i": i, "pad": "x" * 200})
    degraded = not spool.durable
    # A consumer delivers some while the disk is full; then space comes back.
    first = spool.peek(30)
    spool.ack_many(k for k, _ in first)
    cursor = first[-1][0]
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    time.sleep(0.3)
    spool.put({"i": 400})
    after = spool.peek(5, after=cursor)
print(json.dumps({"degraded": degraded, "durable": spool.durable, "cursor": cursor,
                  "after": [[k, p["i"]] for k, p in after],
                  "keys": [k for k, _ in spool.peek(100_000)],
                  "infos": [e["event"] for e in logs if e["log_level"] == "info"]}))
"""


def test_spool_returns_to_disk_when_space_comes_back(tmp_path):
    """Disk full mid-run -> memory; space freed -> the file holds exactly the queued events again,
    keys unchanged (a consumer's cursor stays valid), and they survive a restart."""
    import json

    path = tmp_path / "spool.sqlite3"
    out = subprocess.run([sys.executable, "-c", RECOVER_CHILD, str(path)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["degraded"] and r["durable"]
    assert any("durable again" in e for e in r["infos"])
    # The cursor continues where the consumer stopped: events 30, 31, ... in order.
    assert [i for _, i in r["after"]] == [30, 31, 32, 33, 34]
    reopened = Spool(path, 100_000)
    assert keys_and_ids(reopened)[1] == list(range(30, 401))
    assert [k for k, _ in reopened.peek(100_000)] == r["keys"]
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # New keys continue above every key handed out before.
    assert reopened.put({"i": 401}) > max(r["keys"])
