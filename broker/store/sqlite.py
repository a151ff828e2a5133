"""``sqlite://``: the default, durable :class:`~broker.store.base.EventStore`, one SQLite file.

Durability (fsync policy)
-------------------------
The database runs in WAL mode and :meth:`SqliteStore.append` returns only after the transaction
holding its events committed.

* ``synchronous="full"`` (default): an acknowledged event (ingress 202) is on disk and survives a
  process crash and a power loss: a group of writes holding an append or a dead letter fsyncs the
  WAL. Routes and finishes alone do not fsync; they become durable with the next fsync, so a
  power loss can only undo them, which leads to a redelivery (at-least-once), never a loss.
* ``synchronous="normal"``: commits reach the OS; the WAL is fsynced only at checkpoints. An
  acknowledged event survives a process crash, not a power loss (the database stays intact).

Writes are group-committed on one writer thread (:mod:`broker.store.sqlite_writer`): one
transaction per group. Reads run on a second thread with its own connection (WAL lets them
proceed during a commit); in the steady state there are none, because what was just appended
and routed is served from memory (:mod:`broker.store.sqlite_hot`). The event loop never waits
on a sqlite call.

Semantics match :mod:`broker.store.memory` (seq +1 per event, route rules, size measure,
limits). Each log's last seq is kept in the ``logs`` table, so seqs keep growing across restarts
even when every event was pruned. Pruning happens inside the route/finish transaction, so running
totals loaded at open stay exact and a limit check costs no query. One process owns the file:
waits are woken in process, claims are held in memory (:mod:`broker.store.claims`), the lease of
every log is always this handle's, and :meth:`SqliteStore.close` (which commits every queued
write first) wakes waiters at once.
``sqlite3`` errors surface as :class:`~broker.errors.StoreUnavailable` (disk full:
:class:`~broker.errors.StoreFull`), both retriable.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from broker.errors import StoreFull, StoreUnavailable
from broker.event import Event
from broker.store import sqlite_schema as sql
from broker.store.base import DeadLetter, Delivery, LogEntry, StoreStats
from broker.store.claims import Claims
from broker.store.memory import FULL_RETRY_AFTER, check_route, encode_attributes
from broker.store.signal import LogSignal
from broker.store.sqlite_hot import HotSet
from broker.store.sqlite_schema import LogState, Row
from broker.store.sqlite_thread import ConnectionThread
from broker.store.sqlite_writer import Effect, GroupWriter, no_effect

T = TypeVar("T")

LINGER = 0.002
"""Seconds a route or finish may wait for an append to share its commit."""


class SqliteStore:
    """Durable event store in one SQLite file; see the module docstring."""

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        max_events: int | None = None,
        max_bytes: int | None = None,
        synchronous: Literal["full", "normal"] = "full",
        hot: HotSet | None = None,
    ) -> None:
        """``hot``: the in-memory caches (default limits unless given)."""
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self._path = Path(path)
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._connect = partial(sql.connect, self._path, synchronous.upper())
        self._synchronous = synchronous
        self._writer: GroupWriter | None = None
        self._seqs = sql.LogSeqs()
        self._reader: ConnectionThread | None = None
        self._signal = LogSignal()
        self._claims = Claims()
        self._hot = hot or HotSet()
        self._logs: dict[str, LogState] = {}
        self._events = self._bytes = self._reserved_events = self._reserved_bytes = 0
        self._pending = self._dead = 0

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def commits(self) -> int:
        """Write transactions committed since :meth:`open` (group commit makes this < writes)."""
        return 0 if self._writer is None else self._writer.commits

    async def open(self) -> None:
        if self._writer is not None:
            return
        seqs = self._seqs = sql.LogSeqs()
        writer = GroupWriter(self._connect, relax=self._synchronous == "full", linger=LINGER,
                             before_commit=seqs.before_commit, rolled_back=seqs.rolled_back)
        try:
            snap = await writer.call(sql.setup)
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, ConnectionThread(self._connect, name="weir-sqlite-reader")
        self._logs, self._events, self._bytes = snap.logs, snap.events, snap.bytes
        self._pending, self._dead = snap.pending, snap.dead_letters

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        if writer is None or reader is None:
            return
        self._writer = self._reader = None
        self._claims.clear()
        self._hot.clear()
        self._signal.notify_all()
        await writer.close()
        await reader.close()

    async def append(self, log: str, events: Sequence[Event]) -> None:
        writer = self._open_writer()
        if not events:
            return
        rows: list[Row] = []
        for event in events:
            attrs = encode_attributes(event)
            rows.append((attrs, event.data, len(attrs) + (len(event.data) if event.data is not None else 0)))
        sizes = [row[2] for row in rows]
        count, size = len(rows), sum(sizes)
        self._reserve(count, size)

        seqs = self._seqs

        def job(conn: sqlite3.Connection) -> Effect:
            last = seqs.append(conn, log, rows)

            def effect() -> None:
                self._reserve(-count, -size)
                self._events += count
                self._bytes += size
                self._log(log).last_seq = last
                self._hot.appended(log, last, events, sizes)
                self._signal.notify(log)

            return effect

        await writer.write(job, release=lambda: self._reserve(-count, -size))

    async def wait(self, log: str, after: int, timeout: float) -> None:
        state = self._log(log)
        await self._signal.wait(log, lambda: self._writer is None or state.last_seq > after, timeout)

    async def read(self, log: str, after: int, limit: int) -> Sequence[LogEntry]:
        self._open_writer()
        state = self._logs.get(log)
        if state is None or after >= state.last_seq or limit <= 0:
            return []
        # Rows committed by a transaction whose effect has not yet run on the loop are not counted
        # in last_seq; reading them would let the router route past the end it knows. Seqs are
        # contiguous, so capping the count at last_seq is exact.
        limit = min(limit, state.last_seq - after)
        cached = self._hot.read(log, after, limit)
        if cached is not None:
            return cached
        return await self._read(lambda conn: sql.select_entries(conn, log, after, limit))

    async def head(self, log: str) -> int:
        state = self._logs.get(log)
        return 0 if state is None else state.last_seq

    async def cursor(self, log: str) -> int:
        state = self._logs.get(log)
        return 0 if state is None else state.cursor

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        writer = self._open_writer()
        state = self._logs.get(log, LogState())
        check_route(log, state.last_seq, upto, deliveries)
        if upto <= state.cursor:
            return

        def job(conn: sqlite3.Connection) -> Effect:
            routed = sql.record_route(conn, log, upto, deliveries)
            if routed is None:
                return no_effect
            added, freed = routed

            def effect() -> None:
                self._pending += added
                self._log(log).cursor = upto
                self._freed(freed)

            return effect

        # The deliveries are claimable before the commit: a finish is queued behind this route,
        # so it can never reach the database first. If the commit fails the router routes the
        # same entries again; the queues of these subscriptions are dropped to avoid doubles.
        names = self._hot.routed(log, state.cursor, upto, deliveries)
        try:
            # Not fsynced: a route lost in a power loss is routed again (the next append's
            # fsync or a checkpoint makes it durable), so only a redelivery can follow.
            await writer.write(job, durable=False)
        except BaseException:
            self._hot.committed(names, failed=True)
            raise
        self._hot.committed(names)

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        if limit <= 0:
            return []
        hot = self._hot.take(subscription, limit)
        if hot is not None:
            return self._claims.take(subscription, hot, limit)
        generation = self._hot.generation(subscription)
        after, count = self._claims.scan(subscription, limit)
        found = await self._read(lambda conn: sql.select_pending(conn, subscription, after, count))
        out = self._claims.take(subscription, found, limit)
        self._hot.hold(subscription, out)
        if len(found) < count:
            # Every claimable delivery was in this window: the rest can be served from memory.
            taken = {d.seq for d in out}
            rest = [d for d in found if d.seq not in taken and not self._claims.holds(subscription, d.seq)]
            self._hot.warm(subscription, rest, generation)
        return out

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        self._claims.release(subscription, seqs)
        self._hot.release(subscription, seqs)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        writer = self._open_writer()
        if seqs:
            wanted = list(seqs)
            await writer.write(lambda conn: self._unpended(*sql.unpend(conn, subscription, wanted)),
                               durable=False)
            self._claims.end(subscription, wanted)
            self._hot.end(subscription, wanted)

    async def dead_letter(self, record: DeadLetter) -> None:
        writer = self._open_writer()
        attrs = encode_attributes(record.event)

        def job(conn: sqlite3.Connection) -> Effect:
            sql.insert_dead_letter(conn, record, attrs)
            finished = self._unpended(*sql.unpend(conn, record.subscription, [record.seq]))

            def effect() -> None:
                self._dead += 1
                finished()

            return effect

        await writer.write(job)
        self._claims.end(record.subscription, (record.seq,))
        self._hot.end(record.subscription, (record.seq,))

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        return await self._read(lambda conn: sql.select_dead_letters(conn, log))

    async def forget(self, subscription: str) -> None:
        writer = self._open_writer()
        await writer.write(lambda conn: self._unpended(*sql.unpend(conn, subscription, None)))
        self._claims.drop(subscription)
        self._hot.drop(subscription)

    async def lease(self, log: str) -> bool:
        return True

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        """One process owns the file: the router wakes its workers itself."""

    async def stats(self) -> StoreStats:
        return StoreStats(events=self._events, bytes=self._bytes, pending=self._pending,
                          dead_letters=self._dead)

    def _unpended(self, removed: int, freed: list[int]) -> Effect:
        def effect() -> None:
            self._pending -= removed
            self._freed(freed)

        return effect

    def _freed(self, sizes: list[int]) -> None:
        self._events -= len(sizes)
        self._bytes -= sum(sizes)

    def _reserve(self, count: int, size: int) -> None:
        """Count an append in flight against the limits (negative values give it back)."""
        if count > 0:
            events, stored = self._events + self._reserved_events, self._bytes + self._reserved_bytes
            if self._max_events is not None and events + count > self._max_events:
                raise StoreFull(f"store holds {events} of at most {self._max_events} events",
                                retry_after=FULL_RETRY_AFTER)
            if self._max_bytes is not None and stored + size > self._max_bytes:
                raise StoreFull(f"store holds {stored} of at most {self._max_bytes} bytes",
                                retry_after=FULL_RETRY_AFTER)
        self._reserved_events += count
        self._reserved_bytes += size

    def _log(self, log: str) -> LogState:
        state = self._logs.get(log)
        if state is None:
            state = self._logs[log] = LogState()
        return state

    def _open_writer(self) -> GroupWriter:
        if self._writer is None:
            raise StoreUnavailable(f"the store at {self._path} is not open")
        return self._writer

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise StoreUnavailable(f"the store at {self._path} is not open")
        return await self._reader.run(query)
