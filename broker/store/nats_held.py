"""The deliveries one NATS store handle holds for one subscription, and the messages behind them.

A delivery message carries a bundle of deliveries, of one subscription or, in a fan message
(:mod:`broker.store.nats_fan`), of many; but the server acks, naks and redelivers whole
messages. A fetched message is therefore kept as one :class:`Bundle`, shared by the
:class:`Held` of every subscription it carries deliveries for, until every delivery in it has
an outcome. Released deliveries must be claimable again at once, without the others of their
message, so:

* a delivery released while others of its message are still held is published again as a
  new message of its subscription at once (the message is then **spent**: it must not be
  redelivered whole);
* a message whose every delivery has an outcome is acked when spent or when any delivery of
  it finished (after publishing again the released ones not yet published), and nak'ed
  otherwise: every delivery of it was released, so the server hands out the same again.

Deliveries fetched but not yet handed out wait in :attr:`Held.queue`; they count as held (no
other handle gets them), so a fetch may bring more than one claim asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from broker.event import Event
from broker.store.base import Delivery
from broker.store.bundle import encode_bundle
from broker.store.nats_codec import encode_event
from broker.store.nats_names import Names

Pair = tuple[str, int]
"""``(subscription, seq)``: one delivery of a bundle."""


@dataclass(eq=False, slots=True, kw_only=True)
class Bundle:
    """A fetched delivery message and what became of its deliveries so far."""

    msg: Msg
    log: str
    events: dict[int, Event]
    """The events of its deliveries: seq -> event."""
    open: set[Pair]
    """Deliveries with no outcome yet (handed out or still queued)."""
    fan: bool = False
    """A fan message (:mod:`broker.store.nats_fan`): its queued deliveries may be moved out."""
    fetched: float = 0.0
    """Event-loop time it was fetched (seconds)."""
    back: list[Pair] = field(default_factory=list)
    """Deliveries released and not published again yet."""
    spent: bool = False
    """Whether any delivery of it finished or was published again: it must not be nak'ed."""

    def to_give_back(self) -> dict[str, dict[int, Event]]:
        """The released deliveries not published again yet: subscription -> seq -> event,
        seqs ascending."""
        out: dict[str, dict[int, Event]] = {}
        for sub, seq in sorted(self.back):
            out.setdefault(sub, {})[seq] = self.events[seq]
        return out

    def given_back(self, subscription: str) -> None:
        """``subscription``'s are published again: the message must not be nak'ed any more.
        (Not before the publish succeeded: a failed one is tried again when the message is
        next settled.)"""
        kept = [pair for pair in self.back if pair[0] != subscription]
        self.spent = self.spent or len(kept) < len(self.back)
        self.back = kept


class Held:
    """One subscription's held deliveries; see the module docstring."""

    def __init__(self, subscription: str) -> None:
        self._subscription = subscription
        self._bundles: dict[int, list[Bundle]] = {}
        """seq -> the unsettled bundles carrying it (a re-routed copy may add a second)."""
        self.queue: dict[int, Delivery] = {}
        """Deliveries fetched and not handed out yet, in the order they came."""
        self.claimed = False
        """Whether this handle ever claimed the subscription (it runs a worker of it)."""

    def __bool__(self) -> bool:
        return bool(self._bundles)

    @property
    def issued(self) -> int:
        """Deliveries handed out and not ended yet."""
        return len(self._bundles) - len(self.queue)

    def add(self, bundle: Bundle, seqs: Iterable[int]) -> list[int]:
        """Keep ``bundle`` for this subscription's deliveries ``seqs`` (which it holds open);
        those not held already join the queue. Returns the seqs that joined it."""
        joined: list[int] = []
        sub = self._subscription
        for seq in seqs:
            copies = self._bundles.get(seq)
            if copies is None:
                self._bundles[seq] = [bundle]
                event = bundle.events[seq]
                self.queue[seq] = Delivery(log=bundle.log, subscription=sub, seq=seq, event=event)
                joined.append(seq)
            elif not any(b.msg.reply == bundle.msg.reply for b in copies):
                copies.append(bundle)
        return joined

    def take(self, limit: int) -> list[Delivery]:
        """Hand out up to ``limit`` queued deliveries, ascending by seq."""
        seqs = list(self.queue)[:limit]
        return sorted((self.queue.pop(seq) for seq in seqs), key=lambda d: d.seq)

    def end(self, seqs: Iterable[int], *, finished: bool) -> list[Bundle]:
        """Record an outcome (finished, or released) for the held ones among ``seqs``; the
        bundles it touched, to settle."""
        touched: dict[int, Bundle] = {}
        for seq in dict.fromkeys(seqs):
            self.queue.pop(seq, None)
            for bundle in self._bundles.pop(seq, []):
                pair = (self._subscription, seq)
                bundle.open.discard(pair)
                if finished:
                    bundle.spent = True
                else:
                    bundle.back.append(pair)
                touched[id(bundle)] = bundle
        return list(touched.values())

    def stale(self, before: float) -> list[int]:
        """Queued deliveries of fan messages fetched before ``before`` (loop time)."""
        return [seq for seq in self.queue if any(b.fan and b.fetched < before for b in self._bundles[seq])]

    def seqs(self) -> list[int]:
        """Every held delivery's seq."""
        return list(self._bundles)

    def release_all(self) -> list[Bundle]:
        """Record every held delivery as released and forget them; the bundles, to settle."""
        return self.end(self.seqs(), finished=False)

    def messages(self) -> list[Msg]:
        """The message of every bundle still held, once each."""
        return list({id(b.msg): b.msg for copies in self._bundles.values() for b in copies}.values())


async def settle(
    js: JetStreamContext, names: Names, bundles: Iterable[Bundle], *, timeout: float
) -> set[str]:
    """Publish again what was released from each of ``bundles``, then ack or nak those with an
    outcome for every delivery (see the module docstring). Returns the subscriptions whose
    deliveries were published again. A bundle settled already is skipped."""
    again: set[str] = set()
    for bundle in bundles:
        if bundle.msg.is_acked:
            continue
        if not bundle.open and not bundle.spent:
            bundle.back.clear()
            await bundle.msg.nak()
            continue
        for sub, back in bundle.to_give_back().items():
            body = encode_bundle(bundle.log, [(seq, encode_event(e)) for seq, e in back.items()])
            # A retry after a publish that timed out but was stored must not store it twice;
            # the message's stream sequence keeps the id apart from any other give-back.
            seqs = list(back)
            msg_id = f"{bundle.msg.metadata.sequence.stream}:back:{sub}:{seqs[0]}-{seqs[-1]}-{len(seqs)}"
            await js.publish(names.delivery_subject(sub), body, timeout=timeout,
                             headers={"Nats-Msg-Id": msg_id})
            bundle.given_back(sub)
            again.add(sub)
        if not bundle.open:
            await bundle.msg.ack()
    return again
