"""Which owned delivery partitions of a Kafka store handle are idle, and so are left unfetched.

aiokafka's fetch loop walks every partition its consumer is assigned on each cycle, paused or
not, and under load it cycles hundreds of times a second. With one delivery topic per
subscription (``partitions`` each), 1,000 Triggers put 4,000 partitions into that walk: most of
a core with only one of them receiving events. So the fetching consumer is assigned only the
partitions that are not idle (:mod:`broker.store.kafka_fetch`), and a partition that yielded
no record for :data:`IDLE_AFTER` seconds becomes idle. Every :data:`IDLE_CHECK` seconds one
ListOffsets request over the idle partitions finds those whose end moved past the high
watermark seen when they went idle, and they are fetched again. Every change of the fetched set
reassigns the fetching consumer, so a partition that wakes waits twice as long as before to go
idle again (up to :data:`IDLE_MAX`): a Trigger whose events arrive every few seconds settles as
fetched instead of waking and sleeping with each one. A route made by this handle
wakes the partitions it wrote to at once (:meth:`IdlePartitions.wake`); a delivery another
handle routes to an idle partition waits up to :data:`IDLE_CHECK` seconds longer.

Idleness never loses a record: fetching resumes at the partition's position, and a record
that arrives between the last fetch and the mark is past the mark, so the next check wakes the
partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping

from aiokafka import TopicPartition

IDLE_AFTER = 2.0
"""Seconds without a fetched record after which an owned partition goes idle."""
IDLE_MAX = 60.0
"""The longest a partition that keeps waking waits to go idle (seconds)."""
IDLE_CHECK = 1.0
"""Seconds between checks for partitions going idle and idle partitions with new records."""


class IdlePartitions:
    """The bookkeeping; see the module docstring.

    ``held`` tells which partitions are paused because their subscription has too much waiting:
    those neither go idle nor wake here.
    """

    def __init__(self, held: Callable[[TopicPartition], bool]) -> None:
        self._held = held
        self._seen: dict[TopicPartition, float] = {}
        """Owned partitions and when each last yielded a record (or was assigned or woken)."""
        self._idle: dict[TopicPartition, int] = {}
        """Idle partitions, each with the high watermark seen when it went idle."""
        self._after: dict[TopicPartition, float] = {}
        """Seconds without a record before each partition that has woken goes idle again."""
        self._next = 0.0

    @property
    def partitions(self) -> Collection[TopicPartition]:
        """The idle partitions."""
        return self._idle.keys()

    def __contains__(self, tp: object) -> bool:
        return tp in self._idle

    def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """``tps`` joined the owned partitions: each starts active."""
        now = time.monotonic()
        for tp in tps:
            self._seen[tp] = now
            self._idle.pop(tp, None)

    def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """``tps`` are no longer owned."""
        for tp in tps:
            self._seen.pop(tp, None)
            self._idle.pop(tp, None)
            self._after.pop(tp, None)

    def active(self, tps: Iterable[TopicPartition]) -> bool:
        """``tps`` yielded records, or were resumed for another reason: whether one of them
        was idle."""
        now = time.monotonic()
        woke = False
        for tp in tps:
            if tp in self._seen:
                self._seen[tp] = now
            if self._idle.pop(tp, None) is not None:
                self._after[tp] = min(2 * self._after.get(tp, IDLE_AFTER), IDLE_MAX)
                woke = True
        return woke

    def dropped(self, topic: str) -> None:
        """``topic`` is gone (its subscription was forgotten)."""
        self.revoked([tp for tp in self._seen if tp.topic == topic])

    def wake(self, tp: TopicPartition) -> bool:
        """This handle wrote to ``tp``: whether it was idle (and is active again)."""
        return tp in self._idle and not self._held(tp) and self.active((tp,))

    def due(self) -> bool:
        """Whether a check is due (at most every :data:`IDLE_CHECK` seconds)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + IDLE_CHECK
        return True

    def settle(
        self, high: Callable[[TopicPartition], int | None], position: Callable[[TopicPartition], int]
    ) -> list[TopicPartition]:
        """Make idle the partitions without a record for :data:`IDLE_AFTER` seconds (longer for
        those that woke before) that were fetched up to their high watermark (``position`` is
        at least ``high``); returns them.

        A partition behind its watermark is never idle, however long its fetches have been
        failing: its records are past no mark, and no check would wake it."""
        now = time.monotonic()
        went: list[TopicPartition] = []
        for tp, at in self._seen.items():
            if tp in self._idle or now - at < self._after.get(tp, IDLE_AFTER) or self._held(tp):
                continue
            mark = high(tp)
            if mark is not None and position(tp) >= mark:  # None: no fetch answered for it yet
                self._idle[tp] = mark
                went.append(tp)
        return went

    def moved(self, ends: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """Wake the idle partitions whose end in ``ends`` moved past their mark; returns them."""
        woke = [tp for tp, end in ends.items()
                if tp in self._idle and end > self._idle[tp] and not self._held(tp)]
        self.active(woke)
        return woke
