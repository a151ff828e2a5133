"""Claims of a single-process store: which pending deliveries this handle holds.

A single-process backend (memory, SQLite) keeps pending deliveries ordered by ``seq`` per
subscription. :class:`Claims` remembers, per subscription, the held seqs and a **mark**: every
pending delivery at or below the mark is held (or finished). Claiming reads pending deliveries
above the mark, skips held ones, holds what it returns and raises the mark; releasing lowers
the mark below the released seqs so the next claim finds them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from broker.store.base import Delivery


@dataclass(slots=True)
class _Held:
    seqs: set[int] = field(default_factory=set)
    mark: int = 0


class Claims:
    """Per-subscription claim bookkeeping; all methods are synchronous and O(batch)."""

    def __init__(self) -> None:
        self._subs: dict[str, _Held] = {}

    def scan(self, subscription: str, limit: int) -> tuple[int, int]:
        """``(after, count)``: read up to ``count`` pending deliveries above ``after`` to find
        ``limit`` unheld ones (held seqs above the mark would otherwise use up the window)."""
        held = self._subs.get(subscription)
        if held is None:
            return 0, limit
        return held.mark, limit + sum(1 for s in held.seqs if s > held.mark)

    def take(self, subscription: str, found: Sequence[Delivery], limit: int) -> list[Delivery]:
        """Hold and return the first ``limit`` deliveries of ``found`` (ascending) not yet held."""
        held = self._subs.get(subscription)
        if held is None:
            if not found:
                return []  # no bookkeeping for the many subscriptions that never get anything
            held = self._subs[subscription] = _Held()
        out = [d for d in found if d.seq not in held.seqs][:limit]
        if out:
            held.seqs.update(d.seq for d in out)
            held.mark = max(held.mark, out[-1].seq)
        elif found:
            # Everything in the window is held: nothing unheld lies below its end.
            held.mark = max(held.mark, found[-1].seq)
        return out

    def holds(self, subscription: str, seq: int) -> bool:
        held = self._subs.get(subscription)
        return held is not None and seq in held.seqs

    def release(self, subscription: str, seqs: Iterable[int]) -> None:
        held = self._subs.get(subscription)
        if held is None:
            return
        released = [s for s in seqs if s in held.seqs]
        if released:
            held.seqs.difference_update(released)
            held.mark = min(held.mark, min(released) - 1)

    def end(self, subscription: str, seqs: Iterable[int]) -> None:
        """The deliveries are gone from the store (finished or dead-lettered)."""
        held = self._subs.get(subscription)
        if held is not None:
            held.seqs.difference_update(seqs)

    def drop(self, subscription: str) -> None:
        self._subs.pop(subscription, None)

    def clear(self) -> None:
        self._subs.clear()
