"""What the NATS store holds, measured from stream state and cursors (no log message is read).

The events in a log stream are the sum over its subjects of message count times the event
count the subject carries (see :mod:`broker.store.nats_names`); JetStream reports messages per
subject in stream info. The message holding the cursor stays until the cursor passes its end;
its entries at or below the cursor (kept in the cursor's value) are routed, so not counted.
Messages wholly below the cursor count until they are purged, a moment after the route. One
measurement costs two requests per log plus three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from broker.errors import StoreFull
from broker.store.memory import FULL_RETRY_AFTER
from broker.store.nats_codec import decode_cursor, message_of
from broker.store.nats_io import mapped, stream_names
from broker.store.nats_names import Names, event_count

MAX_AGE = 1.0
"""Seconds a measurement serves the limit checks of appends."""


@dataclass(slots=True, kw_only=True)
class Usage:
    log_events: int
    """Log entries not yet routed."""
    log_bytes: int
    """Bytes of the log streams (messages not yet purged), as NATS counts them."""
    pending: int
    """Delivery messages pending, each a bundle of one or more deliveries."""
    dead_letters: int

    def add(self, events: int, size: int) -> None:
        """Count an append made since the measurement."""
        self.log_events += events
        self.log_bytes += size


async def measure(
    nc: Client, js: JetStreamContext, cursors: KeyValue, names: Names, *, timeout: float
) -> Usage:
    with mapped("measuring the store"):
        logs = await stream_names(nc, names.log_streams, timeout)
        found = await asyncio.gather(*(_log_usage(js, cursors, names, stream) for stream in logs))
        deliveries = await js.stream_info(names.deliveries_stream)
        dead = await js.stream_info(names.dead_stream)
    return Usage(log_events=sum(events for events, _ in found), log_bytes=sum(size for _, size in found),
                 pending=deliveries.state.messages, dead_letters=dead.state.messages)


async def _log_usage(js: JetStreamContext, cursors: KeyValue, names: Names, stream: str) -> tuple[int, int]:
    """(entries not yet routed, bytes) of one log stream."""
    info = await js.stream_info(stream, subjects_filter=">")
    events = sum(event_count(subject) * count for subject, count in (info.state.subjects or {}).items())
    try:
        cursor, routed = decode_cursor((await cursors.get(names.key_of_stream(stream))).value)
    except nats.js.errors.KeyNotFoundError:
        cursor, routed = 0, 0
    if info.state.messages and message_of(cursor) >= info.state.first_seq:
        events -= routed
    return events, info.state.bytes


class Room:
    """Checks appends against ``max_events``/``max_bytes`` (log entries not yet routed) using a
    measurement at most :data:`MAX_AGE` seconds old plus this handle's appends since; when the
    limit looks reached it measures again before refusing."""

    def __init__(
        self, *, max_events: int | None, max_bytes: int | None, measure: Callable[[], Awaitable[Usage]]
    ) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._measure = measure
        self._last: tuple[float, Usage] | None = None
        self._measuring: asyncio.Future[Usage] | None = None

    def measured(self, usage: Usage) -> None:
        self._last = (asyncio.get_running_loop().time(), usage)

    async def _fresh(self) -> Usage:
        """A new measurement; concurrent callers share one."""
        if self._measuring is None:
            self._measuring = asyncio.ensure_future(self._measure())
            self._measuring.add_done_callback(self._measured)
        return await asyncio.shield(self._measuring)

    def _measured(self, done: asyncio.Future[Usage]) -> None:
        self._measuring = None
        if not done.cancelled() and done.exception() is None:
            self.measured(done.result())

    def added(self, events: int, size: int) -> None:
        if self._last is not None:
            self._last[1].add(events, size)

    async def check(self, events: int, size: int) -> None:
        """Raise :class:`~broker.errors.StoreFull` if ``events`` more (``size`` bytes) do not fit."""
        if self._max_events is None and self._max_bytes is None:
            return
        now = asyncio.get_running_loop().time()
        fresh = self._last is not None and now - self._last[0] < MAX_AGE
        usage = self._last[1] if fresh and self._last is not None else await self._fresh()
        problem = self._problem(usage, events, size)
        if problem and fresh:
            problem = self._problem(await self._fresh(), events, size)
        if problem:
            raise StoreFull(problem, retry_after=FULL_RETRY_AFTER)

    def _problem(self, usage: Usage, events: int, size: int) -> str | None:
        if self._max_events is not None and usage.log_events + events > self._max_events:
            return f"store holds {usage.log_events} of at most {self._max_events} events"
        if self._max_bytes is not None and usage.log_bytes + size > self._max_bytes:
            return f"store holds {usage.log_bytes} of at most {self._max_bytes} bytes"
        return None
