"""One SQLite connection owned by one thread, so queries and commits never block the loop.

The SQLite store runs two of them, a writer and a reader (WAL lets the reader read while the
writer commits). ``sqlite3`` errors become :class:`~broker.errors.StoreError` at this boundary.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from broker.errors import StoreError, StoreFull, StoreUnavailable

T = TypeVar("T")

RETRY_AFTER = 1.0
"""Seconds a caller is told to wait after a SQLite failure."""


def store_error(exc: sqlite3.Error) -> StoreError:
    """The Weir error for a ``sqlite3`` failure."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StoreFull(f"sqlite: {exc}", retry_after=RETRY_AFTER)
    return StoreUnavailable(f"sqlite: {exc}", retry_after=RETRY_AFTER)


class ConnectionThread:
    """A connection opened on first use, used only from its own thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str) -> None:
        self._connect = connect
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        """The thread; work submitted here may call :meth:`connection`."""
        self._conn: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        """The connection (on :attr:`executor`'s thread only)."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the thread; ``sqlite3`` errors raise :class:`StoreError`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, lambda: fn(self.connection()))
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    async def close(self) -> None:
        """Close the connection (if it was opened) and stop the thread."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self.executor, conn.close)
        self.executor.shutdown(wait=False)
