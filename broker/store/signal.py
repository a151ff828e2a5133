"""In-process wake-ups for :meth:`EventStore.wait`: one asyncio event per log, set on append.

Used by the stores whose appends all happen in this process (``memory://``, ``sqlite://``).
Waiters re-check their own condition after every wake-up, so a spurious wake-up is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LogSignal:
    """Wakes the tasks waiting on a log when it grows (no polling)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, log: str) -> None:
        """Wake every task waiting on ``log``; call after the new entries are visible."""
        event = self._events.pop(log, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        """Wake every waiter, e.g. on close, so none sleeps until its timeout."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait(self, log: str, ready: Callable[[], bool], timeout: float) -> None:
        """Return once ``ready()`` is true (checked after each wake-up) or ``timeout`` seconds passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            event = self._events.get(log)
            if event is None:
                event = self._events[log] = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                return
