"""What a Kafka store handle knows of one log topic: decoded records (a bounded cache), each
record's event sizes, how far the topic is known to extend, and where its consumer stands."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from broker.event import Event
from broker.store.kafka_codec import locate

CACHE_BYTES = 16 << 20
"""Bytes of decoded events cached per log before the oldest records are dropped."""


@dataclass(slots=True)
class LogView:
    tp: TopicPartition
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while the consumer is positioned and fetching for this topic."""
    cache: dict[int, list[Event]] = field(default_factory=dict)
    sizes: dict[int, list[int]] = field(default_factory=dict)
    """Event sizes of every record cached (or once cached), until routed past."""
    cached_bytes: int = 0
    position: int | None = None
    """Offset of the next record the consumer returns for ``tp``; ``None``: seek first."""
    end: int = 0
    """Offsets below this are known to exist."""
    floor: int = 0
    """The highest cursor this handle has seen: entries up to it count as pruned."""

    def put(self, offset: int, events: list[Event], sizes: list[int]) -> None:
        """Cache the record at ``offset`` (dropping the oldest beyond :data:`CACHE_BYTES`)."""
        if offset in self.cache:
            return
        self.cache[offset] = events
        self.sizes[offset] = sizes
        self.cached_bytes += sum(sizes)
        self.end = max(self.end, offset + 1)
        while self.cached_bytes > CACHE_BYTES and len(self.cache) > 1:
            oldest = min(self.cache)
            del self.cache[oldest]
            self.cached_bytes -= sum(self.sizes[oldest])

    def prune(self, below: int) -> None:
        """Forget the records before offset ``below``."""
        for offset in [o for o in self.sizes if o < below]:
            sizes = self.sizes.pop(offset)
            if self.cache.pop(offset, None) is not None:
                self.cached_bytes -= sum(sizes)

    def has_after(self, seq: int) -> bool:
        """Whether an entry after ``seq`` is known to exist."""
        offset, index = locate(seq)
        sizes = self.sizes.get(offset)
        if sizes is not None and index + 1 < len(sizes):
            return True
        return self.end > offset + 1


def first_after(seq: int) -> tuple[int, int]:
    """``(offset, index)`` of the first entry that may follow ``seq``."""
    offset, index = locate(seq)
    return (0, 0) if offset < 0 else (offset, index + 1)
