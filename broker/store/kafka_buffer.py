"""The deliveries of one subscription a Kafka store handle has fetched: waiting to be claimed
(in fetch order, released ones in front) or held by a claim. Seqs are unique here: a second
record of a delivery already waiting or held is refused (:meth:`SubscriptionBuffer.add`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition

from broker.store.base import Delivery


@dataclass(slots=True, eq=False)
class Buffered:
    tp: TopicPartition
    offset: int
    delivery: Delivery
    held: bool = False


class SubscriptionBuffer:
    """Waiting and held deliveries of one subscription; all methods are synchronous."""

    def __init__(self) -> None:
        self._waiting: deque[Buffered] = deque()
        self._known: dict[int, Buffered] = {}
        """Waiting or held, by seq."""
        self.paused = False
        """Whether the subscription's partitions are paused (too much is waiting)."""

    def __len__(self) -> int:
        """Deliveries waiting."""
        return len(self._waiting)

    def add(self, item: Buffered) -> bool:
        """Queue a fetched delivery; ``False`` (not queued) if its seq is already here."""
        if item.delivery.seq in self._known:
            return False
        self._known[item.delivery.seq] = item
        self._waiting.append(item)
        return True

    def take(self, limit: int, live: Callable[[Buffered], bool]) -> list[Buffered]:
        """Hold and return up to ``limit`` waiting deliveries, oldest first, skipping (and
        forgetting) those ``live`` rejects."""
        out: list[Buffered] = []
        while self._waiting and len(out) < limit:
            item = self._waiting.popleft()
            if not live(item):
                self._known.pop(item.delivery.seq, None)
                continue
            item.held = True
            out.append(item)
        return out

    def of_record(self, tp: TopicPartition, offset: int) -> list[Buffered]:
        """The deliveries of the record at ``offset`` of ``tp`` waiting or held here."""
        return [item for item in self._known.values() if item.offset == offset and item.tp == tp]

    def known(self, seq: int) -> Buffered | None:
        """The delivery ``seq`` waiting or held here."""
        return self._known.get(seq)

    def held(self, seq: int) -> Buffered | None:
        item = self._known.get(seq)
        return item if item is not None and item.held else None

    def forget(self, seq: int) -> None:
        """The delivery is finished, or will be fetched again."""
        self._known.pop(seq, None)

    def give_back(self, items: Iterable[Buffered]) -> None:
        """Released deliveries wait again, in front of the others, in seq order."""
        back = sorted(items, key=lambda item: item.delivery.seq)
        for item in back:
            item.held = False
        self._waiting.extendleft(reversed(back))

    def drop_waiting(self, tp: TopicPartition) -> None:
        """Forget the waiting deliveries of a partition taken away (held ones stay)."""
        kept: deque[Buffered] = deque()
        for item in self._waiting:
            if item.tp == tp:
                self._known.pop(item.delivery.seq, None)
            else:
                kept.append(item)
        self._waiting = kept
