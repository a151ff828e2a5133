"""Idle delivery partitions of a Kafka store handle, paused so that fetches leave them out.

A fetch names every partition the dispatcher group member owns and is not paused. With one
delivery topic per subscription (``partitions`` each), 1,000 Triggers put 4,000 partitions into
every fetch, and fetches run every ``FETCH_WAIT_MS`` while nothing arrives: a third of a core
with nothing to deliver. So a partition that yielded no record for :data:`IDLE_AFTER` seconds
is paused. Every :data:`IDLE_CHECK` seconds one ListOffsets request over the paused partitions
finds those whose end moved past the high watermark seen when they were paused, and resumes
them. A route made by this handle resumes the partitions it wrote to at once
(:meth:`IdlePartitions.wake`); a delivery another handle routes to a paused partition waits up
to :data:`IDLE_CHECK` seconds longer.

Pausing never loses a record: aiokafka does not move a paused partition's position, and a
record that arrives between the last fetch and the pause is past the mark, so the next check
resumes the partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from aiokafka import AIOKafkaConsumer, TopicPartition

from broker.store.kafka_config import kafka_errors

IDLE_AFTER = 2.0
"""Seconds without a fetched record after which an owned partition is paused."""
IDLE_CHECK = 1.0
"""Seconds between checks for partitions to pause and paused partitions to resume."""


class IdlePartitions:
    """Which owned partitions are paused for idleness; see the module docstring.

    ``held`` tells which partitions are paused for another reason (their subscription has too
    much waiting): those are neither paused nor resumed here.
    """

    def __init__(self, held: Callable[[TopicPartition], bool]) -> None:
        self._held = held
        self._seen: dict[TopicPartition, float] = {}
        """Owned partitions and when each last yielded a record (or was assigned or resumed)."""
        self._paused: dict[TopicPartition, int] = {}
        """Partitions paused here, each with the high watermark seen when it was paused."""
        self._next = 0.0

    @property
    def paused(self) -> Collection[TopicPartition]:
        return self._paused.keys()

    def assigned(self, tps: Collection[TopicPartition]) -> None:
        """A new assignment: aiokafka starts every partition of it unpaused."""
        now = time.monotonic()
        self._seen = dict.fromkeys(tps, now)
        self._paused.clear()

    def active(self, tps: Collection[TopicPartition]) -> None:
        """``tps`` yielded records, or were resumed for another reason."""
        now = time.monotonic()
        for tp in tps:
            if tp in self._seen:
                self._seen[tp] = now
            self._paused.pop(tp, None)

    def dropped(self, topic: str) -> None:
        """``topic`` is gone (its subscription was forgotten)."""
        for tp in [tp for tp in self._seen if tp.topic == topic]:
            del self._seen[tp]
            self._paused.pop(tp, None)

    def wake(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """This handle wrote to ``tp``: fetch it again now."""
        if tp in self._paused and not self._held(tp):
            consumer.resume(tp)
            self.active((tp,))

    async def check(self, consumer: AIOKafkaConsumer, timeout: float) -> None:
        """At most every :data:`IDLE_CHECK` seconds: pause the partitions idle for
        :data:`IDLE_AFTER`, and resume the paused ones that have new records."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + IDLE_CHECK
        for tp, at in self._seen.items():
            if tp in self._paused or now - at < IDLE_AFTER or self._held(tp):
                continue
            mark = consumer.highwater(tp)
            if mark is not None:  # None: no fetch answered for it yet
                consumer.pause(tp)
                self._paused[tp] = mark
        if not self._paused:
            return
        async with kafka_errors("checking idle delivery partitions", timeout):
            ends = await consumer.end_offsets(list(self._paused))
        moved = [tp for tp, end in ends.items()
                 if tp in self._paused and end > self._paused[tp] and not self._held(tp)]
        if moved:
            consumer.resume(*moved)
            self.active(moved)
