"""The SQLite store's single writer thread, with group commit.

Every write is a *job*: a function run on the writer thread inside a transaction, returning an
*effect* that is applied on the event loop once that transaction committed (running totals,
cursors, wake-ups). ``before_commit`` runs on the writer thread after a group's jobs, in their
transaction; ``rolled_back`` after a group failed. Jobs submitted while a commit is in progress
are queued and all run in the next single transaction, so N concurrent writers cost one commit
(one fsync) rather than N. Each caller resumes only after the transaction holding its job
committed.

A job is *durable* (the default) or not. With ``relax=True`` (the store runs
``synchronous=FULL``), a group without a durable job commits with ``synchronous=NORMAL``: no
fsync. WAL commits stay in order, so such a commit becomes durable with the next fsync (the next
durable group, or a checkpoint); a power loss can undo it, never reorder or corrupt it.
A group of non-durable jobs also waits up to ``linger`` seconds for a durable job to join it, so
at moderate rates routes and finishes ride along with appends instead of costing a commit each.

A failed transaction fails every job in it and keeps none of their writes. ``sqlite3`` errors
are mapped here, at the boundary: ``SQLITE_FULL`` (disk full) to
:class:`~broker.errors.StoreFull`, anything else to :class:`~broker.errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from broker.store.sqlite_thread import ConnectionThread, store_error

T = TypeVar("T")
Effect = Callable[[], None]
Job = Callable[[sqlite3.Connection], Effect]

def no_effect() -> None:
    """The effect of a job that changed nothing the loop keeps track of."""


@dataclass(slots=True)
class _Queued:
    job: Job
    release: Effect | None
    """Run on the loop when the job failed (e.g. give back a capacity reservation)."""
    future: asyncio.Future[None]
    durable: bool


class GroupWriter:
    """Owns the write connection and the one thread that uses it."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], *, relax: bool = False, linger: float = 0.0,
        before_commit: Callable[[sqlite3.Connection], None] | None = None,
        rolled_back: Callable[[], None] | None = None,
    ) -> None:
        self._before_commit = before_commit
        self._rolled_back = rolled_back
        self._relax = relax
        self._linger = linger
        self._urgent = asyncio.Event()
        """Set when a durable job is queued: a lingering group commits at once."""
        self._full = True
        """Whether the connection currently runs synchronous=FULL (as opened)."""
        self._db = ConnectionThread(connect, name="weir-sqlite-writer")
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._commits = 0

    @property
    def commits(self) -> int:
        """Transactions committed so far (one per group of concurrent writes)."""
        return self._commits

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread outside any group, e.g. to set up the schema."""
        return await self._db.run(fn)

    async def write(self, job: Job, release: Effect | None = None, *, durable: bool = True) -> None:
        """Run ``job`` in the next group transaction; return once it committed and its effect ran."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(job, release, future, durable))
        if durable:
            self._urgent.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        # A cancelled caller cancels only its wait: the job stays queued and its effect still runs.
        await future

    async def close(self) -> None:
        """Commit what is queued, then close the connection and stop the thread."""
        if self._flusher is not None:
            await self._flusher
        await self._db.close()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self._linger > 0 and not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger):
                            await self._urgent.wait()
                group, self._queue = self._queue, []
                self._urgent.clear()
                try:
                    durable = any(q.durable for q in group)
                    effects = await loop.run_in_executor(
                        self._db.executor, self._commit, [q.job for q in group], durable
                    )
                except BaseException as exc:
                    for queued in group:
                        if queued.release is not None:
                            queued.release()
                        if not queued.future.done():
                            # One error object per caller: each raise extends its traceback.
                            mapped = store_error(exc) if isinstance(exc, sqlite3.Error) else exc
                            queued.future.set_exception(mapped)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for queued, effect in zip(group, effects, strict=True):
                    effect()
                    if not queued.future.done():
                        queued.future.set_result(None)
        finally:
            self._flusher = None

    def _commit(self, jobs: list[Job], durable: bool) -> list[Effect]:
        """Writer thread: run ``jobs`` in one transaction; all commit or none."""
        conn = self._db.connection()
        if self._relax and durable != self._full:
            conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._full = durable
        conn.execute("BEGIN IMMEDIATE")
        try:
            effects = [job(conn) for job in jobs]
            if self._before_commit is not None:
                self._before_commit(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            if self._rolled_back is not None:
                self._rolled_back()
            raise
        self._commits += 1
        return effects
