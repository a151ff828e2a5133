"""What an awake worker holds: its claimed deliveries, their order, and its loop.

A :class:`Running` exists only while its worker is awake and is dropped when it hibernates.
Each claimed seq is in :attr:`Running.known` from its claim until its outcome is written back
(or it is released). Unordered deliveries go straight to :attr:`Running.ready`. An ordered
subscription's delivery carries its ``partitionkey`` (one shared key for events without one)
and waits in :attr:`Running.blocked` while an earlier delivery of the same key is ready or in
flight; :meth:`Running.release` hands the key to the next one once that has a final outcome.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from broker.event import PARTITION_KEY
from broker.store.base import Delivery

_NO_KEY = object()

Entry = tuple[Delivery, object]
"""A claimed delivery with its ordering key (``None`` when unordered)."""


@dataclass(slots=True, eq=False)
class Running:
    """An awake worker's state; see the module docstring."""

    known: set[int] = field(default_factory=set)
    """Seqs claimed: buffered, in flight, or finished but not yet written back."""
    ready: deque[Entry] = field(default_factory=deque)
    """Deliveries to start."""
    blocked: dict[object, deque[Entry]] = field(default_factory=dict)
    claimed: set[object] = field(default_factory=set)
    """Ordering keys with a delivery ready or in flight."""
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    loop: asyncio.Task[None] | None = None
    flushing: asyncio.Task[None] | None = None
    """Writing finished outcomes back, beside the loop (one write at a time)."""
    waiter: asyncio.Future[None] | None = None
    worked: bool = False
    """Whether this run claimed anything (one that found nothing hibernates at once)."""

    def enqueue(self, delivery: Delivery, *, ordered: bool) -> None:
        """A newly claimed delivery: ready now, or (ordered) once its key is free."""
        key: object = None
        if ordered:
            key = delivery.event.text(PARTITION_KEY) or _NO_KEY
            if key in self.claimed:
                self.blocked.setdefault(key, deque()).append((delivery, key))
                return
            self.claimed.add(key)
        self.ready.append((delivery, key))

    def release(self, key: object) -> None:
        """The delivery holding ``key`` has its outcome: the key's next delivery becomes ready."""
        if key is None:
            return
        waiting = self.blocked.get(key)
        if waiting:
            self.ready.append(waiting.popleft())
            if not waiting:
                del self.blocked[key]
        else:
            self.claimed.discard(key)
