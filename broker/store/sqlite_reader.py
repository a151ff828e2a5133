"""The SQLite store's reader: one thread with its own connection, so queries never block the loop.

WAL lets it read while the writer thread commits. ``sqlite3`` errors are mapped at this
boundary like the writer's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from broker.store.sqlite_writer import store_error

T = TypeVar("T")


class Reader:
    """Runs read-only queries on a dedicated thread; the connection opens on first use."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="weir-sqlite-reader")
        self._conn: sqlite3.Connection | None = None

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, run)
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=False)
