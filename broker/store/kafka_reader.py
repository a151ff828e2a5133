"""Reading single-partition topics (Broker logs, the dead-letter topic) for the Kafka store.

One group-less consumer per store handle, manually assigned every topic read so far, positioned
with explicit seeks; ``wait`` is a long-poll fetch, not polling. A second consumer, never
assigned anything, asks for offsets: Kafka answers a connection's requests in order, so on the
first one such a question would wait behind the long-poll fetch (half a second).

Log records are decoded once and cached per log with each event's size (for the limits and
stats) in a :class:`~broker.store.kafka_view.LogView`, so the router's ``wait``, ``read`` and
``route`` of the same entries fetch them once, and this handle's own appends are never
fetched back. Entries up to the cursor (as far as this handle has seen it) count as pruned:
reads skip them and the cache drops them; Kafka's retention removes them from the topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from broker.errors import StoreUnavailable
from broker.event import Event
from broker.store.base import LogEntry
from broker.store.kafka_codec import decode_events, locate, seq_of
from broker.store.kafka_config import (
    RETRY_AFTER,
    KafkaStoreConfig,
    Names,
    client_options,
    consumer_options,
    kafka_errors,
    stop_quietly,
)
from broker.store.kafka_topics import Topics
from broker.store.kafka_view import LogView, first_after

FETCH_RECORDS = 500
"""Records one fetch returns at most."""
POLL = 0.25
"""Seconds one long-poll fetch waits; ``wait`` repeats it (so other calls get the log's lock)."""
SEQUENTIAL = 64
"""Records a fetch may skip forward instead of seeking."""
MAX_UNKNOWN = 10_000
"""Records :meth:`LogReader.unrouted` fetches at most to learn their sizes; the rest are estimated."""

Raw: TypeAlias = "ConsumerRecord[bytes, bytes]"


class LogReader:
    """Reads, waits on and caches log topics; see the module docstring."""

    def __init__(self, config: KafkaStoreConfig, names: Names, topics: Topics) -> None:
        self._config = config
        self._names = names
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._prober: AIOKafkaConsumer | None = None
        self._views: dict[str, LogView] = {}
        """By topic."""
        self._setup = asyncio.Lock()
        self._closed = False

    async def stop(self) -> None:
        self._closed = True
        consumers = (self._consumer, self._prober)
        self._consumer = self._prober = None
        self._views.clear()
        for consumer in consumers:
            if consumer is not None:
                await stop_quietly("a log consumer", consumer.stop(), self._config.timeout)

    def remember(self, log: str, offset: int, events: Sequence[Event], sizes: list[int]) -> None:
        """This handle appended ``events`` at ``offset``: cache them if the log is being read."""
        view = self._views.get(self._names.log(log))
        if view is not None:
            view.put(offset, list(events), sizes)

    def routed(self, log: str, upto: int) -> None:
        """The cursor of ``log`` reached ``upto``: entries up to it are pruned (each delivery
        has its copy), so reads skip them and the cache forgets them."""
        view = self._views.get(self._names.log(log))
        if view is not None and upto > view.floor:
            view.floor = upto
            view.prune(locate(upto)[0])

    async def read(self, log: str, after: int, limit: int) -> list[LogEntry]:
        view = await self._view(self._names.log(log), create=False)
        out: list[LogEntry] = []
        if view is None or limit <= 0:
            return out
        offset, index = first_after(max(after, view.floor))
        async with view.lock:
            while len(out) < limit:
                if out and offset >= view.end:
                    # Stop at the end known so far rather than ask Kafka for it (a ListOffsets
                    # per read, as many as the events at low rates); the next read goes on.
                    break
                events = await self._record(view, offset)
                if events is None:
                    break
                stop = min(len(events), index + limit - len(out))
                out.extend(LogEntry(seq=seq_of(offset, i), event=events[i]) for i in range(index, stop))
                offset, index = offset + 1, 0
        return out

    def holds(self, log: str, seq: int) -> bool:
        """Whether ``log`` is known, without asking Kafka, to hold an entry at ``seq`` or later."""
        view = self._views.get(self._names.log(log))
        return view is not None and view.has_after(seq - 1)

    async def head(self, log: str) -> int:
        view = await self._view(self._names.log(log), create=False)
        if view is None:
            return 0
        async with view.lock:
            await self._refresh_end(view)
            if view.end == 0:
                return 0
            events = await self._record(view, view.end - 1)
            return seq_of(view.end - 1, max(len(events or ()) - 1, 0))

    async def wait(self, log: str, after: int, timeout: float) -> None:
        """Return once ``log`` holds an entry after ``after`` or ``timeout`` seconds passed."""
        view = await self._view(self._names.log(log), create=True)
        assert view is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        offset, _ = locate(after)
        while not self._closed:
            async with view.lock:
                if view.has_after(after):
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                # The record holding `after` while its size is unknown, then the next one.
                target = offset if offset >= 0 and offset not in view.sizes else offset + 1
                try:
                    records = await self._fetch(view, target, min(remaining, POLL))
                except StoreUnavailable:
                    if self._closed:
                        return  # closing wakes every wait
                    raise
                for record in records:
                    self._decode(view, record)

    async def entries(self, log: str, seqs: Sequence[int]) -> dict[int, Event]:
        """The events at ``seqs``; ``ValueError`` for a seq with no entry."""
        view = await self._view(self._names.log(log), create=False)
        found: dict[int, Event] = {}
        if view is None:
            if seqs:
                raise ValueError(f"log {log} has no entries")
            return found
        async with view.lock:
            for seq in seqs:
                offset, index = locate(seq)
                events = None if offset < 0 else await self._record(view, offset)
                if events is None or index >= len(events):
                    raise ValueError(f"log {log} has no entry with seq {seq}")
                found[seq] = events[index]
        return found

    async def unrouted(self, topic: str, cursor: int) -> tuple[int, int]:
        """``(events, bytes)`` of the log topic's entries after ``cursor``; records this handle
        never saw are fetched (up to :data:`MAX_UNKNOWN`, the rest estimated from those seen)."""
        view = await self._view(topic, create=False)
        if view is None:
            return 0, 0
        offset, index = first_after(cursor)
        async with view.lock:
            view.prune(offset)
            await self._refresh_end(view)
            events = size = fetched = 0
            for at in range(offset, view.end):
                sizes = view.sizes.get(at)
                if sizes is None and fetched < MAX_UNKNOWN:
                    fetched += 1
                    await self._record(view, at)
                    sizes = view.sizes.get(at)
                if sizes is None:
                    known = [s for seen in view.sizes.values() for s in seen]
                    events += 1
                    size += sum(known) // len(known) if known else 0
                    continue
                part = sizes[index:] if at == offset else sizes
                events += len(part)
                size += sum(part)
        return events, size

    async def bounds(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """The first and the next offset of each partition (of existing topics only: asking
        about a missing topic may create it)."""
        if not tps:
            return {}
        prober = await self._started_prober()
        async with kafka_errors("reading offsets", self._config.timeout):
            firsts = await prober.beginning_offsets(list(tps))
            ends = await prober.end_offsets(list(tps))
        return {tp: (firsts.get(tp, 0), ends.get(tp, 0)) for tp in tps}

    async def scan(self, topic: str, start: int) -> list[Raw]:
        """Every record of ``topic`` (partition 0) from offset ``start`` to its current end."""
        view = await self._view(topic, create=False)
        out: list[Raw] = []
        if view is None:
            return out
        async with view.lock:
            await self._refresh_end(view)
            while start + len(out) < view.end:
                out.extend(r for r in await self._fetch(view, start + len(out), POLL)
                           if r.offset >= start + len(out))
        return out

    async def _view(self, topic: str, *, create: bool) -> LogView | None:
        view = self._views.get(topic)
        if view is not None:
            return view
        async with self._setup:
            view = self._views.get(topic)
            if view is not None:
                return view
            if create:
                await self._topics.ensure(topic, 1)
            elif not await self._topics.exists(topic):
                return None
            consumer = await self._started()
            view = LogView(TopicPartition(topic, 0))
            await self._refresh_end(view)
            self._views[topic] = view
            consumer.assign([v.tp for v in self._views.values()])
            # assign() forgets every position. Set them all, the new view's at its end: the
            # consumer fetches every assigned topic in the background and should not download
            # a log's history nobody asked for.
            for other in self._views.values():
                other.position = other.end if other.position is None else other.position
                consumer.seek(other.tp, other.position)
            return view

    async def _started(self) -> AIOKafkaConsumer:
        if self._closed:
            raise StoreUnavailable("the Kafka store is closed", retry_after=RETRY_AFTER)
        if self._consumer is None:
            # "earliest": a position below the log's start (records removed by retention)
            # moves to the oldest record left; _fetch then treats the gap as empty records.
            consumer = AIOKafkaConsumer(**consumer_options(self._config), group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest")
            async with kafka_errors("connecting", self._config.timeout):
                await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _started_prober(self) -> AIOKafkaConsumer:
        if self._closed:
            raise StoreUnavailable("the Kafka store is closed", retry_after=RETRY_AFTER)
        if self._prober is None:
            prober = AIOKafkaConsumer(**client_options(self._config), group_id=None, enable_auto_commit=False)
            async with kafka_errors("connecting", self._config.timeout):
                await prober.start()
            self._prober = prober
        return self._prober

    async def _record(self, view: LogView, offset: int) -> list[Event] | None:
        """The events of the record at ``offset``, or ``None`` past the end."""
        events = view.cache.get(offset)
        if events is not None:
            return events
        if offset >= view.end:
            await self._refresh_end(view)
            if offset >= view.end:
                return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.timeout
        while (events := view.cache.get(offset)) is None:
            if loop.time() > deadline:
                raise StoreUnavailable(f"Kafka: reading {view.tp.topic} at {offset} timed out",
                                       retry_after=RETRY_AFTER)
            for record in await self._fetch(view, offset, POLL):
                self._decode(view, record)
        return events

    async def _fetch(self, view: LogView, offset: int, wait: float) -> list[Raw]:
        """Records of ``view`` from ``offset`` on (fewer when none arrive in ``wait`` seconds)."""
        consumer = await self._started()
        position = view.position
        if position is None or position > offset or offset - position > SEQUENTIAL:
            consumer.seek(view.tp, offset)
            view.position = position = offset
        async with kafka_errors(f"reading {view.tp.topic}", wait + self._config.timeout):
            batch = await consumer.getmany(view.tp, timeout_ms=int(wait * 1000), max_records=FETCH_RECORDS)
        if view.position != position:
            return []  # re-assigned or re-positioned meanwhile: these may be stale
        records = [r for r in batch.get(view.tp, ()) if r.offset >= position]
        if records and records[0].offset > position:
            # Records removed by retention: the consumer moved to the oldest one left.
            for gone in range(position, records[0].offset):
                view.put(gone, [], [])
        if records:
            view.position = records[-1].offset + 1
            view.end = max(view.end, view.position)
        view.end = max(view.end, consumer.highwater(view.tp) or 0)
        return records

    def _decode(self, view: LogView, record: Raw) -> None:
        events, sizes = decode_events(record.value or b"")
        view.put(record.offset, events, sizes)

    async def _refresh_end(self, view: LogView) -> None:
        # tansu answers ListOffsets with the start of the last record batch plus one, too low
        # when that batch holds several records; fetches (and own appends) keep ``end`` right.
        prober = await self._started_prober()
        async with kafka_errors(f"reading the end of {view.tp.topic}", self._config.timeout):
            ends = await prober.end_offsets([view.tp])
        view.end = max(view.end, ends.get(view.tp, 0))
        consumer = self._consumer
        if consumer is not None and view.tp in consumer.assignment():
            # The high watermark of the latest fetch (the reader keeps fetching every view).
            view.end = max(view.end, consumer.highwater(view.tp) or 0)

