"""What the SQLite store just wrote, kept in memory so the steady state reads nothing back.

Two bounded caches, both filled from data already on the event loop (never from the database):

* the **tail** of each log: events appended and not yet routed, so the router's
  :meth:`~broker.store.sqlite.SqliteStore.read` needs no query and no thread hop;
* the **hot queue** of each subscription: every claimable pending delivery of it, in ``seq``
  order, built from the tail when a route commits. While a subscription is *hot*, claiming
  pops from its queue. A subscription is hot only while the queue is known to hold *all* its
  claimable deliveries: it turns hot when a database claim found no more rows (and nothing was
  routed to it meanwhile), and cold again when its queue or the memory budget overflows, or a
  routed event is missing from the tail. Cold subscriptions claim from the database.

Deliveries handed out are remembered until finished, so a release can put them back.
Memory is bounded by ``max_bytes`` (event sizes as the store counts them) over tail and queues,
and by ``max_queue`` deliveries per subscription.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from broker.event import Event
from broker.store.base import Delivery, LogEntry

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_QUEUE = 4096


@dataclass(slots=True)
class _Sub:
    queue: list[Delivery] | None = None
    """Claimable deliveries ascending by seq; ``None`` while the subscription is cold."""
    held: dict[int, Delivery] = field(default_factory=dict)
    generation: int = 0
    """Routes that added deliveries to this subscription (hot or not), counted at submission
    and again at commit."""
    routing: int = 0
    """Routes with deliveries for this subscription submitted but not yet committed."""


class HotSet:
    """The tail cache and hot queues of one SQLite store; see the module docstring."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._max_bytes = max_bytes
        self._max_queue = max_queue
        self._tails: dict[str, dict[int, tuple[Event, int]]] = {}
        self._subs: dict[str, _Sub] = {}
        self._bytes = 0

    # -- the tail ---------------------------------------------------------------------------

    def appended(self, log: str, last_seq: int, events: Sequence[Event], sizes: Sequence[int]) -> None:
        """``events`` were committed to ``log`` as the seqs ending at ``last_seq``."""
        total = sum(sizes)
        if self._bytes + total > self._max_bytes:
            return  # the router reads these from the database
        tail = self._tails.setdefault(log, {})
        first = last_seq - len(events) + 1
        for offset, (event, size) in enumerate(zip(events, sizes, strict=True)):
            tail[first + offset] = (event, size)
        self._bytes += total

    def read(self, log: str, after: int, limit: int) -> list[LogEntry] | None:
        """Entries after ``after`` held in the tail (a contiguous prefix, at most ``limit``), or
        ``None`` when the first one is not held."""
        tail = self._tails.get(log)
        if not tail or after + 1 not in tail:
            return None
        out: list[LogEntry] = []
        for seq in range(after + 1, after + 1 + limit):
            held = tail.get(seq)
            if held is None:
                break
            out.append(LogEntry(seq=seq, event=held[0]))
        return out

    def routed(
        self, log: str, previous: int, upto: int, deliveries: Iterable[tuple[int, str]]
    ) -> frozenset[str]:
        """``log`` is being routed from cursor ``previous`` to ``upto``: queue the new deliveries
        on hot subscriptions and drop the routed part of the tail. Returns the subscriptions
        that got deliveries; pass them to :meth:`committed` once the route is in the database."""
        tail = self._tails.get(log, {})
        names: set[str] = set()
        for seq, name in deliveries:
            if seq <= previous:
                continue  # routed before: replaying a route adds nothing
            sub = self._subs.setdefault(name, _Sub())
            if name not in names:
                names.add(name)
                sub.generation += 1
                sub.routing += 1
            if sub.queue is None:
                continue
            held = tail.get(seq)
            if held is None or len(sub.queue) >= self._max_queue:
                self._cool(sub)
                continue
            delivery = Delivery(log=log, subscription=name, seq=seq, event=held[0])
            if self._bytes + _size(delivery) > self._max_bytes:
                self._cool(sub)
                continue
            sub.queue.append(delivery)
            self._bytes += _size(delivery)
        for seq in [s for s in tail if s <= upto]:
            self._bytes -= tail.pop(seq)[1]
        return frozenset(names)

    # -- hot queues -------------------------------------------------------------------------

    def committed(self, names: Iterable[str], *, failed: bool = False) -> None:
        """A route announced by :meth:`routed` reached the database (or ``failed``). A database
        claim whose query may have run before that must not warm these subscriptions: it could
        not have seen those deliveries. After a failure their queues are dropped, since the
        same entries will be routed again."""
        for name in names:
            sub = self._subs.setdefault(name, _Sub())
            sub.generation += 1
            sub.routing -= 1
            if failed:
                self._cool(sub)

    def generation(self, subscription: str) -> int:
        sub = self._subs.get(subscription)
        return 0 if sub is None else sub.generation

    def take(self, subscription: str, limit: int) -> list[Delivery] | None:
        """Up to ``limit`` deliveries from a hot subscription's queue (now held), or ``None``
        when it is cold."""
        sub = self._subs.get(subscription)
        if sub is None or sub.queue is None:
            return None
        out, sub.queue = sub.queue[:limit], sub.queue[limit:]
        for delivery in out:
            sub.held[delivery.seq] = delivery
            self._bytes -= _size(delivery)
        return out

    def hold(self, subscription: str, deliveries: Iterable[Delivery]) -> None:
        """Deliveries claimed from the database are now held."""
        sub = self._subs.setdefault(subscription, _Sub())
        for delivery in deliveries:
            sub.held[delivery.seq] = delivery

    def warm(self, subscription: str, claimable: Sequence[Delivery], generation: int) -> None:
        """A database claim saw every claimable delivery (``claimable``: those it left): make
        the subscription hot, unless something was routed to it since ``generation``."""
        sub = self._subs.setdefault(subscription, _Sub())
        size = sum(_size(d) for d in claimable)
        if (sub.queue is not None or sub.generation != generation or sub.routing
                or len(claimable) > self._max_queue or self._bytes + size > self._max_bytes):
            return
        sub.queue = sorted(claimable, key=lambda d: d.seq)
        self._bytes += size

    def release(self, subscription: str, seqs: Iterable[int]) -> None:
        sub = self._subs.get(subscription)
        if sub is None:
            return
        for seq in seqs:
            delivery = sub.held.pop(seq, None)
            if delivery is not None and sub.queue is not None:
                bisect.insort(sub.queue, delivery, key=lambda d: d.seq)
                self._bytes += _size(delivery)

    def end(self, subscription: str, seqs: Iterable[int]) -> None:
        """These deliveries were finished or dead-lettered."""
        sub = self._subs.get(subscription)
        if sub is not None:
            for seq in seqs:
                sub.held.pop(seq, None)

    def drop(self, subscription: str) -> None:
        sub = self._subs.pop(subscription, None)
        if sub is not None:
            self._cool(sub)

    def clear(self) -> None:
        self._tails.clear()
        self._subs.clear()
        self._bytes = 0

    def _cool(self, sub: _Sub) -> None:
        if sub.queue is not None:
            self._bytes -= sum(_size(d) for d in sub.queue)
            sub.queue = None


def _size(delivery: Delivery) -> int:
    """The budget a queued delivery counts: its data (the attributes are shared and small)."""
    data = delivery.event.data
    return 256 + (len(data) if data is not None else 0)
