"""Offset bookkeeping of one delivery partition a Kafka store handle owns (or owned, while it
still has claims or uncommitted work there).

Offsets below ``base`` are finished, so ``base`` is what to commit. Above it, an offset is
buffered (fetched, claimable), held (claimed) or done (finished out of order). A fetch after a
(re-)assignment starts again at the committed offset; :meth:`PartitionState.arrive` tells
which of those records still need handing out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionState:
    subscription: str
    base: int
    """Every offset below is finished: the offset to commit."""
    sent: int
    """The offset last committed (or found committed)."""
    upto: int | None
    """The next offset expected from the fetch; ``None`` until the first after an assignment."""
    done: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)
    buffered: set[int] = field(default_factory=set)
    assigned: bool = True

    @classmethod
    def starting_at(cls, subscription: str, offset: int) -> PartitionState:
        """A partition first fetched at ``offset``: the fetch starts at the committed offset,
        so nothing before it is pending."""
        return cls(subscription, base=offset, sent=offset, upto=offset)

    def arrive(self, offset: int) -> bool:
        """A record at ``offset`` was fetched: whether it is new here (neither handed out nor
        finished). Offsets skipped by the fetch have no record and count as finished."""
        if self.upto is None:
            # Re-assigned: the fetch restarts at the committed offset, which may lag ``base``
            # when a commit failed; commit again.
            self.sent = min(self.sent, offset)
            self.upto = offset
        if offset < self.upto:
            return False
        for missing in range(self.upto, offset):
            self.finish(missing)
        self.upto = offset + 1
        return not (offset < self.base or offset in self.done or offset in self.held)

    def finish(self, offset: int) -> None:
        if offset >= self.base:
            self.done.add(offset)
        while self.base in self.done:
            self.done.discard(self.base)
            self.base += 1

    @property
    def due(self) -> bool:
        """Whether ``base`` has moved past the last commit."""
        return self.base > self.sent

    @property
    def pinned(self) -> bool:
        """Whether the handle must keep the partition: it holds claims there, or finished
        deliveries it could not commit yet (another owner would deliver them again)."""
        return bool(self.held or self.done) or self.due

    def revoke(self) -> None:
        """The partition was taken away: buffered records are dropped (fetched again if it
        comes back), claims stay held."""
        self.assigned = False
        self.upto = None
        self.buffered.clear()
