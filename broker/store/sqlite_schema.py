"""The SQLite store's schema (version 1) and every statement run against it.

Tables: ``logs`` (per log: last seq handed out, router cursor), ``events`` (attributes as orjson
JSON so value types survive; data as a BLOB where NULL means no data and a zero-length BLOB empty
data; the size counted against ``max_bytes``), ``pending`` (one row per undelivered
``(subscription, seq)``) and ``dead_letters``. Functions here run on the store's threads, never
on the event loop; write functions run inside the writer's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from broker.event import Event
from broker.store.base import DeadLetter, Delivery, LogEntry

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, cursor INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    log TEXT NOT NULL, seq INTEGER NOT NULL, attrs BLOB NOT NULL, data BLOB, size INTEGER NOT NULL,
    PRIMARY KEY (log, seq));
CREATE TABLE IF NOT EXISTS pending (
    subscription TEXT NOT NULL, seq INTEGER NOT NULL, log TEXT NOT NULL,
    PRIMARY KEY (subscription, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_event ON pending (log, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, log TEXT NOT NULL, subscription TEXT NOT NULL, seq INTEGER NOT NULL,
    attrs BLOB NOT NULL, data BLOB, reason TEXT NOT NULL, attempts INTEGER NOT NULL, status INTEGER,
    dead_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_by_log ON dead_letters (log, id);
"""
UNREFERENCED = "NOT EXISTS (SELECT 1 FROM pending p WHERE p.log = events.log AND p.seq = events.seq)"
PRUNE_ROUTED = f"DELETE FROM events WHERE log = ? AND seq > ? AND seq <= ? AND {UNREFERENCED} RETURNING size"
PRUNE_ONE = f"DELETE FROM events WHERE log = ? AND seq = ? AND {UNREFERENCED} RETURNING size"
CHUNK = 500  # seqs per IN (...) list, well below SQLite's bound-parameter limit

Row = tuple[bytes, bytes | None, int]
"""An event ready to store: attributes JSON, data, size."""


@dataclass(slots=True)
class LogState:
    """What the event loop keeps of a log: the last seq committed and the router cursor."""

    last_seq: int = 0
    cursor: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything loaded at open: log states and the running totals."""

    logs: dict[str, LogState]
    events: int
    bytes: int
    pending: int
    dead_letters: int


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, the given fsync level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def setup(conn: sqlite3.Connection) -> Snapshot:
    """Create or check the schema and load the running totals."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version not in (0, SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"unknown schema version {version} (expected {SCHEMA_VERSION})")
    conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    rows = conn.execute("SELECT name, last_seq, cursor FROM logs")
    logs = {name: LogState(last, cursor) for name, last, cursor in rows}
    events, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM events").fetchone()
    (pending,) = conn.execute("SELECT count(*) FROM pending").fetchone()
    (dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return Snapshot(logs=logs, events=events, bytes=size, pending=pending, dead_letters=dead)


class LogSeqs:
    """Appends to the events table, with each log's last seq kept here instead of read from and
    written to ``logs`` at every append: one SELECT per log until a rollback, and one UPSERT per
    log per transaction (:meth:`before_commit`). Used on the writer thread only.

    Three statements per append had been about a tenth of the process's busy samples in S6
    (the writer thread shares the pinned core with the event loop)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._touched: dict[str, int] = {}

    def append(self, conn: sqlite3.Connection, log: str, rows: Sequence[Row]) -> int:
        """Append ``rows`` to ``log`` with the next seqs; returns the last seq used."""
        last = self._last.get(log)
        if last is None:
            found = conn.execute("SELECT last_seq FROM logs WHERE name = ?", (log,)).fetchone()
            last = found[0] if found else 0
        first = last + 1
        conn.executemany(
            "INSERT INTO events (log, seq, attrs, data, size) VALUES (?, ?, ?, ?, ?)",
            [(log, first + i, attrs, data, size) for i, (attrs, data, size) in enumerate(rows)],
        )
        last = self._last[log] = self._touched[log] = first + len(rows) - 1
        return last

    def before_commit(self, conn: sqlite3.Connection) -> None:
        """Write the last seqs of the logs appended to in this transaction."""
        if self._touched:
            conn.executemany(
                "INSERT INTO logs (name, last_seq, cursor) VALUES (?, ?, 0)"
                " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq",
                list(self._touched.items()),
            )
            self._touched.clear()

    def rolled_back(self) -> None:
        """The transaction's appends are gone: read every log's last seq afresh."""
        self._last.clear()
        self._touched.clear()


def record_route(
    conn: sqlite3.Connection, log: str, upto: int, deliveries: Sequence[tuple[int, str]]
) -> tuple[int, list[int]] | None:
    """Add pending rows above the cursor, move it to ``upto`` and prune what nobody wants.

    Returns (pending rows added, sizes of pruned events), or ``None`` when already routed.
    """
    (previous,) = conn.execute("SELECT cursor FROM logs WHERE name = ?", (log,)).fetchone()
    if upto <= previous:
        return None
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO pending (subscription, seq, log) VALUES (?, ?, ?)",
        [(sub, seq, log) for seq, sub in deliveries if seq > previous],
    )
    added = conn.total_changes - before
    conn.execute("UPDATE logs SET cursor = ? WHERE name = ?", (upto, log))
    return added, [size for (size,) in conn.execute(PRUNE_ROUTED, (log, previous, upto)).fetchall()]


def unpend(conn: sqlite3.Connection, subscription: str, seqs: Sequence[int] | None) -> tuple[int, list[int]]:
    """Drop pending rows (``None``: all of the subscription) and prune the events they held.

    Returns (pending rows removed, sizes of pruned events).
    """
    if seqs is None:
        sql = "DELETE FROM pending WHERE subscription = ? RETURNING log, seq"
        removed: list[tuple[str, int]] = conn.execute(sql, (subscription,)).fetchall()
    else:
        removed = []
        for start in range(0, len(seqs), CHUNK):
            chunk = seqs[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"DELETE FROM pending WHERE subscription = ? AND seq IN ({marks}) RETURNING log, seq"
            removed += conn.execute(sql, (subscription, *chunk)).fetchall()
    return len(removed), [size for pair in removed for (size,) in conn.execute(PRUNE_ONE, pair).fetchall()]


def insert_dead_letter(conn: sqlite3.Connection, record: DeadLetter, attrs: bytes) -> None:
    conn.execute(
        "INSERT INTO dead_letters (log, subscription, seq, attrs, data, reason, attempts, status, dead_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.log, record.subscription, record.seq, attrs, record.event.data, record.reason,
         record.attempts, record.status, record.dead_at),
    )


def select_entries(conn: sqlite3.Connection, log: str, after: int, limit: int) -> list[LogEntry]:
    rows = conn.execute(
        "SELECT seq, attrs, data FROM events WHERE log = ? AND seq > ? ORDER BY seq LIMIT ?",
        (log, after, limit),
    )
    return [LogEntry(seq=seq, event=_event(attrs, data)) for seq, attrs, data in rows]


def select_pending(conn: sqlite3.Connection, subscription: str, after: int, limit: int) -> list[Delivery]:
    rows = conn.execute(
        "SELECT p.log, p.seq, e.attrs, e.data FROM pending p JOIN events e ON e.log = p.log AND e.seq = p.seq"
        " WHERE p.subscription = ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
        (subscription, after, limit),
    )
    return [
        Delivery(log=log, subscription=subscription, seq=seq, event=_event(attrs, data))
        for log, seq, attrs, data in rows
    ]


def select_dead_letters(conn: sqlite3.Connection, log: str) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT subscription, seq, attrs, data, reason, attempts, status, dead_at"
        " FROM dead_letters WHERE log = ? ORDER BY id",
        (log,),
    )
    return [
        DeadLetter(log=log, subscription=sub, seq=seq, event=_event(attrs, data), reason=reason,
                   attempts=attempts, status=status, dead_at=dead_at)
        for sub, seq, attrs, data, reason, attempts, status, dead_at in rows
    ]


def _event(attrs: bytes, data: bytes | None) -> Event:
    return Event(orjson.loads(attrs), data)
