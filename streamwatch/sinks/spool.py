"""A durable, bounded FIFO of event payloads: what the MQTT sink has not yet delivered.

Backed by one SQLite file in WAL mode with ``synchronous=FULL``: ``put`` returns only
after the row is committed, so neither a ``kill -9`` of the daemon nor a power cut loses an
event that was put. Keys are SQLite ``AUTOINCREMENT`` ids, so they only ever grow (also
across restarts) and order the queue; ``peek`` reads oldest first and ``ack`` deletes.

Bounded: beyond ``max_events`` the OLDEST events are dropped, with one warning line per
``put`` that dropped (an alert lost is worth a line; the count says how many).

Degrades instead of crashing: if the file cannot be opened or written (read-only or
missing state directory, disk full, I/O error), one clear error is logged and the spool
continues as an in-memory queue with the same bound, keeping every event it already held
that can still be read. Events are then lost on restart, which the error line says. Every
``retry_every`` seconds (default 30) the memory queue tries to become durable again: once the
file can be written (space freed, directory made writable), it is rewritten to hold exactly the
queued events, with their keys unchanged (so a consumer's "after key" cursor stays valid), and
one info line says so. Events an earlier run left in a file that was never writable this run
stay in it and are delivered after the next start, as before. When the file could not even be
read, it is left alone (its events would be lost) and the queue stays in memory until restart.

Thread-safe: the daemon's threads ``put`` while the sink's delivery thread peeks and acks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS events (key INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)"


class Spool:
    """Durable bounded FIFO of JSON-serialisable dicts (see module docstring)."""

    def __init__(self, path: Path | str, max_events: int, retry_every: float = 30.0):
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = Path(path)
        self.max_events = int(max_events)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._memory: OrderedDict[int, dict[str, Any]] | None = None
        self._next_key = 1  # used in memory mode only
        self._count = 0
        self.dropped_total = 0
        self._closed = False
        self.retry_every = float(retry_every)
        self._retry_at = 0.0  # monotonic time of the next attempt to return to the file
        self._file_unread = False  # the file held events we could not read when we degraded
        self._keep_below = 0  # rows of an earlier run left in the file (keys below this) stay there
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            self._degrade(exc, during="open")

    # -- public API -----------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """True while events are kept on disk (False after degrading to memory)."""
        return self._db is not None

    def put(self, payload: dict[str, Any]) -> int:
        """Append one payload; returns its key. Never raises for storage problems."""
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self._closed:
                raise RuntimeError("spool is closed")
            self._maybe_recover()
            if self._db is not None:
                try:
                    return self._db_put(text)
                except sqlite3.Error as exc:
                    self._degrade(exc, during="put")
            return self._mem_put(json.loads(text))

    def peek(self, limit: int, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` oldest entries with key > ``after``, oldest first."""
        if limit <= 0:
            return []
        with self._lock:
            if self._closed:
                return []
            self._maybe_recover()
            if self._db is not None:
                try:
                    rows = self._db.execute(
                        "SELECT key, payload FROM events WHERE key > ? ORDER BY key LIMIT ?", (after, limit)
                    ).fetchall()
                except sqlite3.Error as exc:
                    self._degrade(exc, during="peek")
                else:
                    return self._decode_rows(rows)
            assert self._memory is not None
            out = []
            for key, payload in self._memory.items():
                if key > after:
                    out.append((key, dict(payload)))
                    if len(out) >= limit:
                        break
            return out

    def ack(self, key: int) -> None:
        """Delete one delivered entry (unknown keys are ignored: dropped or already acked)."""
        self.ack_many((key,))

    def ack_many(self, keys: Iterable[int]) -> None:
        """Delete several delivered entries in one transaction."""
        keys = list(keys)
        if not keys:
            return
        with self._lock:
            if self._closed:
                return
            if self._db is not None:
                try:
                    with self._db:
                        cur = self._db.executemany("DELETE FROM events WHERE key = ?", [(k,) for k in keys])
                    self._count = max(0, self._count - max(cur.rowcount, 0))
                    return
                except sqlite3.Error as exc:
                    self._degrade(exc, during="ack")
            assert self._memory is not None
            for k in keys:
                self._memory.pop(k, None)
            self._count = len(self._memory)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def __bool__(self) -> bool:
        # An empty spool is still a spool: keep ``spool or default`` from replacing it.
        return True

    def close(self) -> None:
        """Close the file. Idempotent. Everything not acked stays on disk for the next run."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error:  # pragma: no cover - nothing useful to do at exit
                    pass
                self._db = None

    def __repr__(self) -> str:
        mode = "disk" if self._db is not None else "memory"
        return f"Spool({str(self.path)!r}, max_events={self.max_events}, {mode}, len={self._count})"

    # -- SQLite ---------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) or not self.path.exists():
                raise
            # Not a database (corrupted or a foreign file): keep it for inspection, start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            self.path.rename(aside)
            log.error("spool file unreadable, moved aside", path=str(self.path), moved_to=str(aside), error=str(exc))
            db = self._connect()
        self._db = db
        self._count = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        if self._count > self.max_events:
            with self._lock:
                self._trim()
        if self._count:
            log.info("spool has undelivered events from a previous run", path=str(self.path), events=self._count)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level="DEFERRED", check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot enable WAL journal (got {mode!r})")
            db.execute("PRAGMA synchronous=FULL")
            with db:
                db.execute(_SCHEMA)
                # A real write, so a read-only file or directory fails here and not at the first event.
                db.execute("PRAGMA user_version=1")
        except BaseException:
            db.close()
            raise
        return db

    def _db_put(self, text: str) -> int:
        assert self._db is not None
        with self._db:
            key = self._db.execute("INSERT INTO events (payload) VALUES (?)", (text,)).lastrowid
            self._count += 1
            try:
                self._trim()
            except BaseException:
                self._count -= 1
                raise
        return int(key)

    def _trim(self) -> None:
        excess = self._count - self.max_events
        if excess <= 0:
            return
        if self._db is not None:
            self._db.execute(
                "DELETE FROM events WHERE key IN (SELECT key FROM events ORDER BY key LIMIT ?)", (excess,)
            )
        else:
            assert self._memory is not None
            for _ in range(excess):
                self._memory.popitem(last=False)
        self._count -= excess
        self.dropped_total += excess
        log.warning(
            "spool full, dropped oldest undelivered events",
            dropped=excess,
            dropped_total=self.dropped_total,
            max_events=self.max_events,
        )

    def _decode_rows(self, rows: list[tuple[int, str]]) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for key, text in rows:
            try:
                payload = json.loads(text)
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                # Only possible if the file was edited or damaged; say so rather than loop on it.
                log.error("spool entry unreadable, discarded", key=key, error=str(exc))
                self.ack(key)
                continue
            out.append((int(key), payload))
        return out

    def _read_only_rows(self) -> tuple[list[tuple[int, str]], int] | None:
        """(rows, last key ever given) of a file we cannot write; None if it cannot be read."""
        if not self.path.is_file():
            return [], 0
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True)
            try:
                rows = db.execute("SELECT key, payload FROM events ORDER BY key").fetchall()
                seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
                return rows, int(seq[0]) if seq else 0
            finally:
                db.close()
        except (sqlite3.Error, OSError, ValueError):
            return None

    def _maybe_recover(self) -> None:
        """In memory mode, now and then try to make the queue durable again (module docstring)."""
        if self._db is not None or self._file_unread or time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + self.retry_every
        assert self._memory is not None
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            with db:
                db.execute("DELETE FROM events WHERE key >= ?", (self._keep_below,))
                db.executemany(
                    "INSERT INTO events (key, payload) VALUES (?, ?)",
                    [(k, json.dumps(p, separators=(",", ":"), ensure_ascii=False)) for k, p in self._memory.items()],
                )
                # Keys never go back, even if the newest events were already delivered.
                db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'events'", (self._next_key - 1,))
                if not db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'events'").fetchone():
                    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (self._next_key - 1,))
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            log.debug("spool file still not usable", path=str(self.path), error=f"{type(exc).__name__}: {exc}")
            return
        self._db, self._memory = db, None
        log.info("spool file usable again; queued events are durable again", path=str(self.path), events=self._count)

    # -- memory fallback ------------------------------------------------------------

    def _mem_put(self, payload: dict[str, Any]) -> int:
        assert self._memory is not None
        key = self._next_key
        self._next_key += 1
        self._memory[key] = payload
        self._count = len(self._memory)
        self._trim()
        return key

    def _degrade(self, exc: BaseException, during: str) -> None:
        """Switch to an in-memory queue, keeping whatever can still be read from the file."""
        kept: OrderedDict[int, dict[str, Any]] = OrderedDict()
        next_key = 1
        if self._db is not None:
            try:
                rows = self._db.execute("SELECT key, payload FROM events ORDER BY key").fetchall()
                for key, text in rows:
                    try:
                        kept[int(key)] = json.loads(text)
                    except ValueError:
                        pass
                row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
                next_key = int(row[0]) + 1 if row else 1
            except sqlite3.Error:
                pass
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        left_in_file = 0
        if not kept:
            # Never opened (read-only directory, full disk at start): the file's events from an
            # earlier run stay there for the next start; our keys continue after them.
            snapshot = self._read_only_rows()
            if snapshot is None:
                self._file_unread = self.path.is_file() and self.path.stat().st_size > 0
            else:
                rows, seq = snapshot
                left_in_file = len(rows)
                next_key = max(next_key, seq + 1, *(int(k) + 1 for k, _ in rows))
                self._keep_below = next_key
        if kept:
            next_key = max(next_key, max(kept) + 1)
        self._memory = kept
        self._next_key = next_key
        self._count = len(kept)
        self._retry_at = time.monotonic() + self.retry_every
        log.error(
            "spool file not usable; queueing events in memory only (they will not survive a restart)",
            path=str(self.path),
            during=during,
            error=f"{type(exc).__name__}: {exc}",
            kept_events=len(kept),
            left_in_file=left_in_file,
            hint="check that the state directory exists, is writable by the daemon and its disk is not full",
        )
        self._trim()
