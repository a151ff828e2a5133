"""The deliveries one NATS store handle holds for one subscription, and the messages behind them.

A delivery message carries a bundle of deliveries (:mod:`broker.store.nats_route`), but the
server acks, naks and redelivers whole messages. :class:`Held` therefore keeps each fetched
message as a :class:`Bundle` until every delivery in it has an outcome. Released deliveries
must be claimable again at once, without the others of their message, so:

* a delivery released while others of its message are still held is published again as a
  new message at once (the message is then **spent**: it must not be redelivered whole);
* a message whose every delivery has an outcome is acked when spent or when any delivery of
  it finished (after publishing again the released ones not yet published), and nak'ed
  otherwise: every delivery of it was released, so the server hands out the same again.

Deliveries fetched but not yet handed out wait in :attr:`Held.queue`; they count as held (no
other handle gets them), so a fetch may bring more than one claim asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.msg import Msg

from broker.event import Event
from broker.store.base import Delivery


@dataclass(eq=False, slots=True, kw_only=True)
class Bundle:
    """A fetched delivery message and what became of its deliveries so far."""

    msg: Msg
    log: str
    events: dict[int, Event]
    """Every delivery of the message: seq -> event."""
    open: set[int]
    """Seqs with no outcome yet (handed out or still queued)."""
    back: list[int] = field(default_factory=list)
    """Seqs released and not published again yet."""
    spent: bool = False
    """Whether any delivery of it finished or was published again: it must not be nak'ed."""

    def to_give_back(self) -> dict[int, Event]:
        """The released deliveries not published again yet (ascending)."""
        return {seq: self.events[seq] for seq in sorted(self.back)}

    def given_back(self) -> None:
        """They are published again: the message must not be nak'ed any more. (Not before the
        publish succeeded: a failed one is tried again when the message is next settled.)"""
        self.spent = self.spent or bool(self.back)
        self.back = []


class Held:
    """One subscription's held deliveries; see the module docstring."""

    def __init__(self, subscription: str) -> None:
        self._subscription = subscription
        self._bundles: dict[int, list[Bundle]] = {}
        """seq -> the unsettled bundles carrying it (a re-routed copy may add a second)."""
        self.queue: dict[int, Delivery] = {}
        """Deliveries fetched and not handed out yet, in the order they came."""

    def __bool__(self) -> bool:
        return bool(self._bundles)

    @property
    def issued(self) -> int:
        """Deliveries handed out and not ended yet."""
        return len(self._bundles) - len(self.queue)

    def add(self, msg: Msg, log: str, deliveries: list[tuple[int, Event]]) -> None:
        """Keep a fetched message; its deliveries not held already join the queue."""
        bundle = Bundle(msg=msg, log=log, events=dict(deliveries), open={seq for seq, _ in deliveries})
        for seq, event in deliveries:
            copies = self._bundles.get(seq)
            if copies is None:
                self._bundles[seq] = [bundle]
                self.queue[seq] = Delivery(log=log, subscription=self._subscription, seq=seq, event=event)
            elif not any(b.msg.reply == msg.reply for b in copies):
                copies.append(bundle)

    def take(self, limit: int) -> list[Delivery]:
        """Hand out up to ``limit`` queued deliveries, ascending by seq."""
        seqs = list(self.queue)[:limit]
        return sorted((self.queue.pop(seq) for seq in seqs), key=lambda d: d.seq)

    def end(self, seqs: list[int], *, finished: bool) -> list[Bundle]:
        """Record an outcome (finished, or released) for the held ones among ``seqs``; the
        bundles it touched, to settle."""
        touched: dict[int, Bundle] = {}
        for seq in dict.fromkeys(seqs):
            self.queue.pop(seq, None)
            for bundle in self._bundles.pop(seq, []):
                bundle.open.discard(seq)
                if finished:
                    bundle.spent = True
                else:
                    bundle.back.append(seq)
                touched[id(bundle)] = bundle
        return list(touched.values())

    def release_all(self) -> list[Bundle]:
        """Record every held delivery as released and forget them; the bundles, to settle."""
        bundles = list({id(b): b for copies in self._bundles.values() for b in copies}.values())
        for bundle in bundles:
            bundle.back.extend(bundle.open)
            bundle.open.clear()
        self._bundles.clear()
        self.queue.clear()
        return bundles

    def messages(self) -> list[Msg]:
        """The message of every bundle still held, once each."""
        return list({id(b.msg): b.msg for copies in self._bundles.values() for b in copies}.values())
