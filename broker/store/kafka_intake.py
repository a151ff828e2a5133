"""Taking fetched delivery records into a Kafka store handle's buffers: a subscription's own
records, fan records (:mod:`broker.store.fan`), and moving out fan deliveries that cannot wait.

A record of a subscription's own topic holds a bundle of its deliveries; those not finished
yet (:meth:`~broker.store.kafka_offsets.PartitionState.fresh`) join its buffer, and a second
record of a delivery already buffered or held (a route replayed after a crash) counts that
delivery as finished in the second record.

A route with deliveries for at least two unordered subscriptions writes fan records to one
topic, ``<prefix>.dl._fan`` (``partitions`` partitions, no key), which every handle's group
member follows along with its subscriptions' topics. The handle owning a fan partition buffers
each fan record's deliveries under their subscriptions (a buffer made for a subscription it has
not claimed yet joins its topic at the first claim), and the record's offset is finished once
each of its deliveries is (:mod:`broker.store.kafka_offsets`, keys ``(subscription, seq)``). A
delivery that cannot wait here is **moved out**: produced as a record of its subscription's own
topic (acknowledged), and then counted finished in the fan record. That happens when its
subscription already has ``buffer`` deliveries waiting (a slow subscriber must not hold up the
others' progress in the record), and when it waited :data:`MOVE_AFTER` seconds for a
subscription never claimed here (a Trigger this process does not run). A subscription forgotten
here drops its deliveries of fan records written before (by record timestamp), and all of them
until it is claimed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, MutableMapping

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from broker.store.base import Delivery
from broker.store.bundle import encode_bundle
from broker.store.kafka_buffer import Buffered, SubscriptionBuffer
from broker.store.kafka_codec import FAN, decode_bundle, decode_fan, frame
from broker.store.kafka_config import KafkaStoreConfig, Names, kafka_errors
from broker.store.kafka_offsets import Offsets
from broker.store.kafka_topics import Topics, learn_topics

log = logging.getLogger(__name__)

MOVE_AFTER = 2.0
"""Seconds a fan record's delivery waits for a subscription never claimed here before it is
moved out to the subscription's own topic, where others claim it."""


class Intake:
    """One handle's intake of fetched delivery records and fan records; see the module
    docstring. ``subs`` and ``offsets`` are the claims' own."""

    def __init__(
        self, config: KafkaStoreConfig, names: Names, topics: Topics, offsets: Offsets,
        subs: MutableMapping[str, SubscriptionBuffer], producer: AIOKafkaProducer,
    ) -> None:
        self._config = config
        self._names = names
        self._topics = topics
        self._offsets = offsets
        self._subs = subs
        self._producer = producer
        self._out: list[Buffered] = []
        """Deliveries to move out, not yet produced."""
        self._moving: asyncio.Task[None] | None = None
        self._forgotten: dict[str, tuple[int, bool]] = {}
        """subscription -> (unix ms it was forgotten, claimed since)."""

    def claimed(self, subscription: str) -> None:
        forgotten = self._forgotten.get(subscription)
        if forgotten is not None:
            self._forgotten[subscription] = (forgotten[0], True)

    def forgot(self, subscription: str, buffer: SubscriptionBuffer | None) -> None:
        """``subscription`` was forgotten: its deliveries of fan records here count as finished."""
        self._forgotten[subscription] = (int(time.time() * 1000), False)
        # Those queued to move out too: producing them would create the deleted topic again.
        leaving = [item for item in self._out if item.delivery.subscription == subscription]
        self._out = [item for item in self._out if item.delivery.subscription != subscription]
        for item in leaving + ([] if buffer is None else buffer.items()):
            if item.tp.topic == self._names.fan:
                self._offsets.finish_one(item.tp, item.offset, item.key, held=item.held)

    def take(
        self, name: str, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], now: float
    ) -> set[str]:
        """Buffer the new deliveries of a record fetched from ``name``'s topic (:data:`FAN`: the
        fan topic); the subscriptions given some."""
        offset, fan = record.offset, name == FAN
        part = self._offsets.arrive(name, tp, offset)
        if part is None:
            return set()
        value = record.value or b""
        try:
            deliveries = _fan_deliveries(value) if fan else decode_bundle(name, value)
        except Exception:
            log.exception("undecodable %s record %s@%d skipped", "fan" if fan else "delivery", tp, offset)
            self._offsets.finish(tp, offset)
            return set()
        fresh = part.fresh(offset, [(d.subscription, d.seq) for d in deliveries])
        woke: set[str] = set()
        for delivery in deliveries:
            item = Buffered(tp, offset, delivery, fetched=now)
            if item.key not in fresh:
                continue
            sub = self._fan_buffer(delivery.subscription, record.timestamp) if fan else self._subs[name]
            here = None if sub is None else sub.known(delivery.seq)
            if sub is None or (here is not None and (here.tp, here.offset) != (tp, offset)):
                # Forgotten, or a second record of a delivery already here (a route replayed
                # after a crash).
                self._offsets.finish_one(tp, offset, item.key, held=None)
            elif here is None:
                part.buffered[offset] += 1
                if fan and len(sub) >= self._config.buffer:
                    self._hold(item)
                else:
                    sub.add(item)
                    woke.add(delivery.subscription)
        return woke

    def _fan_buffer(self, name: str, timestamp: int) -> SubscriptionBuffer | None:
        """The buffer for ``name``'s deliveries of a fan record written at ``timestamp`` (unix
        ms), made if need be; ``None`` when they are dropped (forgotten here)."""
        forgotten = self._forgotten.get(name)
        if forgotten is not None and (timestamp <= forgotten[0] or not forgotten[1]):
            return None
        sub = self._subs.get(name)
        if sub is None:
            sub = self._subs[name] = SubscriptionBuffer(joined=False)
        return sub

    def stale(self, now: float, joining: Collection[str]) -> None:
        """Queue for moving out the deliveries that waited :data:`MOVE_AFTER` seconds for a
        subscription never claimed here. A claim waiting for its subscription to join the
        group (``joining``; with 1,000 Triggers a join takes seconds) counts as claimed. A
        subscription claimed here but busy keeps its deliveries: moving them out when all are
        slow (a saturated dispatcher) would only add work."""
        before = now - MOVE_AFTER
        for name, sub in self._subs.items():
            if len(sub) and not sub.joined and name not in joining:
                for item in sub.stale(self._names.fan, before):
                    self._hold(item)

    def _hold(self, item: Buffered) -> None:
        """Queue a waiting delivery for moving out; held meanwhile, so its partition stays
        pinned to this handle."""
        self._offsets.hold(item.tp, item.offset)
        item.held = True
        self._out.append(item)

    def move_soon(self, wake: Callable[[TopicPartition], None]) -> None:
        """Move out what is queued in a task of its own (one at a time; producing to many
        topics may take a while, and fetching must go on meanwhile); ``wake`` gets each
        partition written."""
        if self._out and (self._moving is None or self._moving.done()):
            self._moving = asyncio.create_task(self._move(wake), name="weir-kafka-move-out")

    async def _move(self, wake: Callable[[TopicPartition], None]) -> None:
        for tp in await self.move_out():
            wake(tp)

    async def stop(self, *, finish: bool) -> None:
        """Stop moving out; with ``finish``, move out what is still queued first (a clean
        close), else drop it (as a crash would: the fan records come back whole)."""
        moving, self._moving = self._moving, None
        if moving is not None:
            if not finish:
                moving.cancel()
            await asyncio.gather(moving, return_exceptions=True)
        if finish:
            await self.move_out()

    async def move_out(self) -> list[TopicPartition]:
        """Produce the queued deliveries to their subscriptions' topics, then count them
        finished in their fan records; the partitions written. When producing fails they stay
        queued (the fan records are not finished meanwhile, so a crash delivers them again)."""
        items, self._out = self._out, []
        if not items:
            return []
        per_sub: dict[str, list[Buffered]] = {}
        for item in items:
            per_sub.setdefault(item.delivery.subscription, []).append(item)
        topics = {name: self._names.delivery(name) for name in per_sub}
        try:
            await self._topics.ensure_all(dict.fromkeys(topics.values(), self._config.partitions))
            async with kafka_errors("moving fan deliveries out", 2 * self._config.timeout):
                await learn_topics(self._producer.client, topics.values())
                acks = []
                for name, moved in per_sub.items():
                    moved.sort(key=lambda item: item.delivery.seq)
                    for at in range(0, len(moved), 64):
                        chunk = [item.delivery for item in moved[at : at + 64]]
                        value = encode_bundle(chunk[0].log, [(d.seq, frame(d.event)) for d in chunk])
                        acks.append(await self._producer.send(topics[name], value))
                sent = await asyncio.gather(*acks)
        except Exception as exc:
            log.warning("moving %d fan deliveries out failed (tried again): %s", len(items), exc)
            self._out.extend(items)
            return []
        for item in items:
            self._offsets.finish_one(item.tp, item.offset, item.key)
        return [TopicPartition(s.topic, s.partition) for s in sent]


def _fan_deliveries(value: bytes) -> list[Delivery]:
    log_name, per_sub, events = decode_fan(value)
    return [Delivery(log=log_name, subscription=sub, seq=seq, event=events[seq])
            for sub, seqs in per_sub.items() for seq in seqs]
