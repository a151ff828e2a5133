"""The fetching of a Kafka store handle's delivery partitions: a group-less consumer whose
assignment is the partitions the handle owns in the dispatcher group, less the idle ones.

The dispatcher group member (:mod:`broker.store.kafka_claims`) only holds ownership and
commits; it never fetches. Ownership arrives with a start offset per partition (the committed
one), and from then on this reader keeps each partition's next offset itself: every change of
the fetched set reassigns the consumer and seeks each partition to it. Records aiokafka fetched
ahead and had not handed out are dropped by the reassignment and fetched again.

Partitions whose subscription has too many deliveries waiting (``held``) stay assigned but
paused: that changes with every few hundred deliveries, too often to reassign for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from broker.store.kafka_config import KafkaStoreConfig, consumer_options, kafka_errors, stop_quietly
from broker.store.kafka_idle import IdlePartitions

log = logging.getLogger(__name__)

Records = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class DeliveryReader:
    """See the module docstring. ``held`` tells which partitions to keep paused."""

    def __init__(self, config: KafkaStoreConfig, held: Callable[[TopicPartition], bool]) -> None:
        self._config = config
        self._held = held
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}
        """Owned partitions with a known position: the next offset to fetch."""
        self._high: dict[TopicPartition, int] = {}
        """The end of each owned partition seen by the latest fetch of it."""
        self._fetching: frozenset[TopicPartition] = frozenset()
        self._changed = asyncio.Event()
        self._due = False
        self.idle = IdlePartitions(held)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(**consumer_options(self._config), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        async with kafka_errors("starting the delivery reader", self._config.timeout):
            await consumer.start()
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._next.clear()
        self._fetching = frozenset()
        if consumer is not None:
            await stop_quietly("the delivery reader", consumer.stop(), self._config.timeout)

    def own(self, starts: Mapping[TopicPartition, int]) -> None:
        """Fetch these newly owned partitions, each from its start offset."""
        self._next.update(starts)
        self.idle.assigned(starts)
        self._refresh()

    def disown(self, tps: Collection[TopicPartition]) -> None:
        for tp in tps:
            self._next.pop(tp, None)
            self._high.pop(tp, None)
        self.idle.revoked(tps)
        self._refresh()

    def dropped(self, topic: str) -> None:
        """``topic``'s subscription was forgotten."""
        self.disown([tp for tp in self._next if tp.topic == topic])

    def wake(self, tp: TopicPartition) -> None:
        """This handle wrote to ``tp``: fetch it now if it was idle."""
        if self.idle.wake(tp):
            self._refresh_soon()

    def pause(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.pause(*(tp for tp in tps if tp in self._fetching))

    def resume(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.resume(*(tp for tp in tps if tp in self._fetching))
        if self.idle.active(tps):
            self._refresh_soon()

    def _position(self, tp: TopicPartition) -> int:
        return self._next.get(tp, 0)

    def high(self, tp: TopicPartition) -> int:
        """The end of ``tp`` seen by the latest fetch of it (0 before one)."""
        return self._high.get(tp, 0)

    async def fetch(self, timeout_ms: int, max_records: int) -> Records:
        """Records of the fetched partitions, waiting up to ``timeout_ms`` for some."""
        consumer = self._consumer
        if consumer is None or not self._fetching:
            self._changed.clear()
            # Nothing to fetch: wait for a partition to be owned or to wake.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._changed.wait()
            return {}
        batch: Records = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in batch.items():
            if tp in self._next and records:
                self._next[tp] = max(self._next[tp], records[-1].offset + 1)
        if self.idle.active(batch):
            self._refresh_soon()  # a partition that went idle during the fetch yielded records
        return batch

    async def check(self, member: AIOKafkaConsumer) -> None:
        """At most every :data:`~broker.store.kafka_idle.IDLE_CHECK` seconds: stop fetching
        partitions idle for :data:`~broker.store.kafka_idle.IDLE_AFTER`, and fetch again the
        idle ones that have new records. ``member`` reads the ends: its metadata knows every
        owned topic, the reader's only the fetched ones."""
        consumer = self._consumer
        if consumer is None or not self.idle.due():
            return
        for tp in self._fetching:
            mark = consumer.highwater(tp)
            if mark is not None:
                self._high[tp] = mark
        if self.idle.settle(self._high.get, self._position):
            self._refresh()
        if not self.idle.partitions:
            return
        async with kafka_errors("checking idle delivery partitions", self._config.timeout):
            ends = await member.end_offsets(list(self.idle.partitions))
        if self.idle.moved(ends):
            self._refresh()

    def _refresh_soon(self) -> None:
        """:meth:`_refresh` once the current step is done: a route waking the partitions of a
        hundred subscriptions one by one reassigns once, not a hundred times."""
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self._refresh)

    def _refresh(self) -> None:
        """Assign the consumer the owned partitions that are not idle, at their positions."""
        self._due = False
        consumer = self._consumer
        wanted = frozenset(tp for tp in self._next if tp not in self.idle)
        if consumer is None or wanted == self._fetching:
            return
        # Positions of partitions that stay are kept too: the last records aiokafka handed out.
        consumer.assign(sorted(wanted))
        for tp in wanted:
            consumer.seek(tp, self._next[tp])
        held = [tp for tp in wanted if self._held(tp)]
        if held:
            consumer.pause(*held)
        self._fetching = wanted
        self._changed.set()
