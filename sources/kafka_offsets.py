"""Offset bookkeeping for KafkaSource: what may be committed while records finish out of order."""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """One partition's offsets: taken (fetched, in increasing order), finished, committable.

    ``committable`` only moves over a contiguous run of finished offsets, so committing it never
    skips a record still in flight.
    """

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._finished: set[int] = set()
        self.first: int | None = None
        """The first offset taken."""
        self.committable: int | None = None
        """The offset to commit: one past the last record before which every record finished."""
        self.committed: int | None = None

    def take(self, offset: int) -> None:
        """Record that ``offset`` was fetched (offsets arrive in increasing order)."""
        if self.first is None:
            self.first = offset
        self._order.append(offset)

    def finish(self, offset: int) -> None:
        """Record that ``offset``'s event reached its final outcome."""
        self._finished.add(offset)
        while self._order and self._order[0] in self._finished:
            done = self._order.popleft()
            self._finished.discard(done)
            self.committable = done + 1
