"""Paced commits: at most one per ``commit_interval`` seconds, in the background.

A Kafka commit costs the cluster about what a produce does (measured against tansu: 125 µs of
its CPU per OffsetCommit, 135 µs per one-record produce). Committing at every ``finish`` and
every ``route`` made two of them per event at low rates, where each call carries one event.
:class:`Pacer` turns those calls into one commit per interval, covering everything due by the
time it runs; what the commit writes is the caller's to say (the ``commit`` callable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Pacer:
    """Runs ``commit`` at most once per ``interval`` seconds after :meth:`commit` asks for it.

    With ``interval`` 0, :meth:`commit` runs ``commit`` itself and raises its error; otherwise
    it returns at once and a failed background commit is logged and tried again one interval
    later (what it would have committed is still due, so nothing is lost: at worst delivered
    again after a crash).
    """

    def __init__(self, interval: float, commit: Callable[[], Awaitable[None]], what: str) -> None:
        self._interval = interval
        self._commit = commit
        self._what = what
        self._waiting: asyncio.Task[None] | None = None
        """The commit asked for and not started yet: later calls share it."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._last = float("-inf")
        self._failing = False

    @property
    def paced(self) -> bool:
        return self._interval > 0

    async def commit(self) -> None:
        """Commit now (``interval`` 0) or within ``interval`` seconds."""
        if self._interval <= 0:
            await self._commit()
        else:
            self.soon()

    def soon(self) -> None:
        """Commit within ``interval`` seconds (``interval`` above 0), without waiting."""
        if self._waiting is None:
            task = self._waiting = asyncio.create_task(self._later(), name=f"weir-kafka-commit-{self._what}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        """Drop the commits asked for or running (the caller commits at close, or must not: a
        crash)."""
        self._waiting = None
        for task in list(self._tasks):
            task.cancel()

    async def _later(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last + self._interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        # Calls from here on ask for a commit of their own: this one may have read what is
        # due before their offsets were.
        self._waiting = None
        self._last = loop.time()
        try:
            await self._commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:
                log.warning("committing %s (tried again every %.2f s): %s", self._what, self._interval, exc)
            self._failing = True
            await self.commit()
        else:
            self._failing = False
