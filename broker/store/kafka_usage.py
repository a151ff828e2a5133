"""Usage of the Kafka store, from offsets: the stats and the ``max_events``/``max_bytes`` limits.

* ``events``/``bytes``: entries of every log under the prefix not yet routed (after the
  router group's cursor). Routed entries live on in the log topic until Kafka's retention
  removes them, but each delivery carries its own copy of the event, so they no longer count.
  Sizes come from this handle's cache; records it never saw are fetched to be measured.
* ``pending``: the dispatcher group's lag over every delivery topic (end offset minus
  committed offset), less the records this handle finished above a commit gap: delivery
  records, each a bundle of one or more deliveries, not deliveries. The end is
  the largest of what Kafka lists, what this handle's own routes were acknowledged and what its
  claim fetches saw: tansu lists the end of a partition whose last record batch holds several
  records (a route's deliveries to one partition) as that batch's first offset plus one.
* ``dead_letters``: the records of the dead-letter topic (all logs).

Limits are checked against a snapshot of ``events``/``bytes`` at most :data:`USAGE_TTL` old
plus this handle's appends since (in flight included). Appends of other processes within that
window are not counted, so several ingress processes together may exceed a limit by what they
append in :data:`USAGE_TTL` seconds.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from broker.errors import StoreFull
from broker.store.base import StoreStats
from broker.store.kafka_claims import Claims
from broker.store.kafka_config import Names
from broker.store.kafka_reader import LogReader
from broker.store.kafka_router import RouterGroup
from broker.store.kafka_topics import Topics
from broker.store.memory import FULL_RETRY_AFTER

USAGE_TTL = 0.5
"""Seconds a usage snapshot serves the limit checks."""


class Usage:
    """Stats and limit checks of one store handle; see the module docstring."""

    def __init__(self, *, names: Names, topics: Topics, reader: LogReader, router: RouterGroup,
                 claims: Claims, max_events: int | None, max_bytes: int | None) -> None:
        self._names = names
        self._topics = topics
        self._reader = reader
        self._router = router
        self._claims = claims
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._snapshot: tuple[int, int] | None = None
        self._taken = 0.0
        self._since = [0, 0]
        """Events and bytes this handle appended (or is appending) since the snapshot."""
        self._refresh = asyncio.Lock()
        self._produced: dict[TopicPartition, int] = {}
        """The end offset of each delivery partition after this handle's latest route."""

    def produced(self, tp: TopicPartition, offset: int) -> None:
        """This handle's route wrote a delivery at ``offset`` of ``tp``."""
        self._produced[tp] = max(self._produced.get(tp, 0), offset + 1)

    def deleted(self, topic: str) -> None:
        """``topic`` was deleted (a forgotten subscription)."""
        for tp in [tp for tp in self._produced if tp.topic == topic]:
            del self._produced[tp]

    async def stats(self) -> StoreStats:
        events, size = await self._unrouted()
        return StoreStats(events=events, bytes=size, pending=await self._pending(),
                          dead_letters=await self._dead())

    async def reserve(self, count: int, size: int) -> None:
        """Count an append against the limits; :class:`StoreFull` (nothing counted) when over."""
        if self._max_events is None and self._max_bytes is None:
            return
        async with self._refresh:
            if self._snapshot is None or time.monotonic() - self._taken > USAGE_TTL:
                snapshot = await self._unrouted()
                self._snapshot, self._taken, self._since = snapshot, time.monotonic(), [0, 0]
        events = self._snapshot[0] + self._since[0]
        stored = self._snapshot[1] + self._since[1]
        if self._max_events is not None and events + count > self._max_events:
            raise StoreFull(f"store holds {events} of at most {self._max_events} unrouted events",
                            retry_after=FULL_RETRY_AFTER)
        if self._max_bytes is not None and stored + size > self._max_bytes:
            raise StoreFull(f"store holds {stored} of at most {self._max_bytes} unrouted bytes",
                            retry_after=FULL_RETRY_AFTER)
        self._since[0] += count
        self._since[1] += size

    def unreserve(self, count: int, size: int) -> None:
        """The append counted by :meth:`reserve` failed."""
        self._since[0] = max(self._since[0] - count, 0)
        self._since[1] = max(self._since[1] - size, 0)

    async def _unrouted(self) -> tuple[int, int]:
        logs = await self._topics.catalog(self._names.logs)
        cursors = await self._router.cursors(logs)
        events = size = 0
        for topic in logs:
            more, measured = await self._reader.unrouted(topic, cursors.get(topic, 0))
            events += more
            size += measured
        return events, size

    async def _pending(self) -> int:
        topics = await self._topics.catalog(self._names.deliveries)
        tps = [TopicPartition(topic, p) for topic, count in topics.items() for p in range(count)]
        bounds = await self._reader.bounds(tps)
        committed = await self._topics.committed(self._names.dispatchers, tps)
        progress = self._claims.progress()
        pending = 0
        for tp, (first, end) in bounds.items():
            start = max(committed.get(tp, first), first)
            base, done, fetched = progress.get(tp, (start, 0, 0))
            end = max(end, fetched, self._produced.get(tp, 0))
            pending += max(end - max(start, base) - done, 0)
        return pending

    async def _dead(self) -> int:
        dead = self._names.dead
        if dead not in await self._topics.catalog(dead):
            return 0
        tp = TopicPartition(dead, 0)
        first, end = (await self._reader.bounds([tp]))[tp]
        return end - first
