"""A first-come, first-served counting gate whose every operation is O(1).

``asyncio.Semaphore`` in Python 3.11 scans all its waiters on every acquire made while a
released slot has not yet been taken up (``locked()`` asks each waiter whether it was
cancelled). With 1,000 Triggers each keeping 64 deliveries in flight, tens of thousands of
requests wait for the HTTP sender's 256 connections, and those scans took 8% of the event loop
(bench/RESULTS.md, S3 with 1,000 Triggers). The NATS store gates its fetches with one too."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """At most ``limit`` holders at once; the others wait in arrival order.

    Use as ``async with slots:``. A waiter cancelled before its turn leaves the queue
    untouched until its turn comes and is skipped then; one cancelled just after being handed
    a slot passes it on.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds or has been handed."""
        return self._free

    @property
    def waiting(self) -> int:
        """Waiters queued, cancelled ones not yet skipped included."""
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot, but cancelled before it resumed
            raise

    def release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot goes straight to the next waiter
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
