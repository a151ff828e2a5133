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
    fetched: float = 0.0
    """Event-loop time it was fetched (seconds)."""

    @property
    def key(self) -> tuple[str, int]:
        """``(subscription, seq)``: the delivery within its record."""
        return self.delivery.subscription, self.delivery.seq


class SubscriptionBuffer:
    """Waiting and held deliveries of one subscription; all methods are synchronous."""

    def __init__(self, *, joined: bool = True) -> None:
        self._waiting: deque[Buffered] = deque()
        self._known: dict[int, Buffered] = {}
        """Waiting or held, by seq."""
        self.paused = False
        """Whether the subscription's partitions are paused (too much is waiting)."""
        self.joined = joined
        """Whether the handle follows the subscription's topic (it claimed); a buffer made for
        deliveries of fan records alone does not."""

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

    def items(self) -> list[Buffered]:
        """Every delivery waiting or held here."""
        return list(self._known.values())

    def stale(self, topic: str, before: float) -> list[Buffered]:
        """Take the waiting deliveries from ``topic`` fetched before ``before`` (loop time) out."""
        out = [item for item in self._waiting if item.tp.topic == topic and item.fetched < before]
        if out:
            gone = {id(item) for item in out}
            self._waiting = deque(item for item in self._waiting if id(item) not in gone)
            for item in out:
                self._known.pop(item.delivery.seq, None)
        return out

    def drop_waiting(self, tp: TopicPartition) -> None:
        """Forget the waiting deliveries of a partition taken away (held ones stay)."""
        kept: deque[Buffered] = deque()
        for item in self._waiting:
            if item.tp == tp:
                self._known.pop(item.delivery.seq, None)
            else:
                kept.append(item)
        self._waiting = kept
