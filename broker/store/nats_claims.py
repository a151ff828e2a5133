"""Claims of the NATS store: pending deliveries handed out by durable consumers.

Each subscription has a durable pull consumer on the deliveries stream, filtered to its
subject, with explicit acks and ``ack_wait`` = the claim lease; fan messages, which carry
deliveries of many subscriptions (:mod:`broker.store.nats_fan`), have one consumer that every
handle shares. A claim takes what this handle already queued for the subscription, fetching
first from the fan consumer when it has nothing queued and fan messages may be waiting, and
from the subscription's own consumer when messages of its own may be waiting (:class:`Due`).
JetStream hands a message to one fetcher at a time, so the claim is exclusive across every
handle and process. This handle keeps what it fetched (:mod:`broker.store.nats_held`) until
each delivery is finished, dead-lettered or released, and then acks the message, naks it (all
released: claimable again at once), or publishes the released ones again before acking it.
:meth:`Claims.close` gives back everything held the same way. A background task sends "in
progress" for every held message each lease/3 seconds, so a long delivery keeps its claim;
when the holder dies, the server hands its messages out again once the lease ends (deliveries
of them already finished are then delivered twice). Ordered subscriptions use
``max_ack_pending=1`` and one delivery per message: the next delivery is handed out only once
the previous one is acked (the consumer is updated when a subscription switches between
ordered and unordered). The deliveries stream is a work queue, so an acked message is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Collection, Iterable, Sequence

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from broker.errors import StoreError, StoreUnavailable
from broker.store.base import Delivery
from broker.store.bundle import BUNDLE_EVENTS
from broker.store.nats_codec import decode_bundle
from broker.store.nats_config import consumer_config
from broker.store.nats_due import Due
from broker.store.nats_fan import FAN_CONSUMER, FanFetches, decode_fan
from broker.store.nats_held import Bundle, Held, settle
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls, flush

log = logging.getLogger(__name__)

PULL_TIMEOUT = 0.5
"""Seconds to wait for the answer to one fetch beyond :data:`CLAIM_WAIT` (the server answers
within that plus a round trip). On a loaded 2-core machine answers now and then come later; the
claim then fails fast, the worker tries again after :data:`PULL_RETRY`, and what the late answer
brings is nak'ed (:mod:`broker.store.nats_pull`). Waiting 2 s instead still left hundreds of
such claims in S3 with 100 Triggers saturated, and it delayed some deliveries of the fixed step
past its 8 s drain."""
PULL_RETRY = 0.05
PULL_BYTES = 1024 * 1024
"""Most bytes one fetch asks for (more when the server allows larger messages)."""
CLAIM_WAIT = 0.02
"""Seconds the server may keep a fetch open when it cannot hand anything out at once (the
consumer's ``max_ack_pending`` is reached, or nothing is pending)."""
QUEUED_MOST = 1024
"""Deliveries of fan messages queued for one subscription; more are moved out at once, so a
slow subscription does not keep fan messages (and the others' progress in them) waiting."""
FAN_QUEUED_MOST = 50_000
"""Deliveries queued on this handle beyond which it fetches no more fan messages."""
MOVE_AFTER = 2.0
"""Seconds a fan message's delivery stays queued for a subscription never claimed here (a
Trigger this process does not run) before it is moved out for others to claim. One claimed
here but busy keeps its deliveries (up to :data:`QUEUED_MOST`): moving them out when all are
slow (a saturated dispatcher) would only add work."""
TICK = 0.5
"""Seconds between checks for deliveries to move out."""


class Claims:
    """The deliveries this handle holds, per subscription; see the module docstring.

    ``tell`` is called with the subscriptions a fan fetch queued deliveries for, and ``moved``
    with those whose deliveries this handle published on their own subjects (for other
    handles' claims)."""

    def __init__(
        self, nc: Client, js: JetStreamContext, names: Names, *, pulls: Pulls, lease: float, timeout: float,
        tell: Callable[[Collection[str]], None], moved: Callable[[Collection[str]], None],
    ) -> None:
        self._nc = nc
        self._pulls = pulls
        self._js = js
        self._names = names
        self._lease = lease
        self._timeout = timeout
        self._tell = tell
        self._moved = moved
        self._held: dict[str, Held] = {}
        self._per_msg: dict[str, float] = {}
        """subscription -> deliveries per message in its last fetch (full bundles before one)."""
        self._consumers: dict[str, bool] = {}
        """subscription -> ``ordered`` of the consumer config this handle last applied."""
        self._forgotten: dict[str, int] = {}
        """subscription -> the deliveries stream's last sequence when it was forgotten here:
        its deliveries in fan messages up to that one are dropped."""
        self.due = Due()
        self._fan = FanFetches(js, names, pulls=pulls, config=self._config(None, False), due=self.due,
                               deliver=self._distribute, room=lambda: self._queued() < FAN_QUEUED_MOST,
                               most=self._most, timeout=min(timeout, PULL_TIMEOUT), wait=CLAIM_WAIT)
        self._task: asyncio.Task[None] | None = None

    def ordered(self, subscription: str) -> bool:
        """Whether this handle last claimed ``subscription`` as ordered."""
        return self._consumers.get(subscription) is True

    async def claim(self, subscription: str, limit: int, ordered: bool) -> list[Delivery]:
        held = self._held.setdefault(subscription, Held(subscription))
        now = asyncio.get_running_loop().time()
        held.claimed = True
        if limit <= 0 or (ordered and held.issued):
            return []  # ordered: the server hands out nothing while this handle holds one
        want = 1 if ordered else limit
        if len(held.queue) >= want:
            return held.take(want)
        if not ordered:
            if not held.queue and self.due.fan(now):
                await self._fan.fetch()
            if not self.due.own(subscription, now):
                return held.take(want)
        started = self.due.start(subscription)
        stream, consumer = self._names.deliveries_stream, self._names.consumer(subscription)
        with mapped(f"claiming deliveries of {subscription}"):
            if self._consumers.get(subscription) is not ordered:
                config = self._config(subscription, ordered)
                await self._js.add_consumer(stream, config, timeout=self._timeout)
                self._consumers[subscription] = ordered
            # Ordered: the server hands out one at a time; asking for more would keep the
            # request open until it expires. Unordered: about as many messages as the
            # deliveries still wanted fill, by the bundle size seen last.
            per_msg = self._per_msg.get(subscription, float(BUNDLE_EVENTS))
            batch = 1 if ordered else max(1, math.ceil((want - len(held.queue)) / per_msg))
            try:
                msgs = await self._pulls.pull(stream, consumer, batch, max_bytes=self._most(),
                                              timeout=min(self._timeout, PULL_TIMEOUT), expires=CLAIM_WAIT)
            except nats.errors.TimeoutError:
                self._consumers.pop(subscription, None)  # deleted by forget elsewhere? create it again
                raise StoreUnavailable(
                    f"claiming deliveries of {subscription}: no answer to a fetch within {PULL_TIMEOUT} s",
                    retry_after=PULL_RETRY,
                ) from None
        self.due.pulled(subscription, now, more=len(msgs) >= batch, started=started)
        count = 0
        for msg in msgs:
            log_name, deliveries = decode_bundle(msg.data)
            events = dict(deliveries)
            bundle = Bundle(msg=msg, log=log_name, events=events, open={(subscription, s) for s in events})
            held.add(bundle, events)
            count += len(deliveries)
        if msgs:
            self._per_msg[subscription] = count / len(msgs)
        self._renew_soon()
        return held.take(want)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        """Record the held deliveries among ``seqs`` as finished (unheld seqs are ignored) and
        settle the messages whose every delivery now has an outcome; returns once the server
        has received the acks (one round trip, not one per ack).

        The server confirms nothing more (awaiting a confirmation per ack halves throughput): an
        ack lost with the connection means the message is handed out again once the claim lease
        ends, which at-least-once delivery allows. If the round trip fails this raises
        ``StoreUnavailable``; the acks are sent after a reconnect.
        """
        held = self._held.get(subscription)
        if held is None:
            return
        touched = held.end(seqs, finished=True)
        if any(not bundle.open for bundle in touched):
            with mapped(f"finishing deliveries of {subscription}"):
                await self._settle(touched)
                await flush(self._nc, self._timeout)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        """Give back the held deliveries among ``seqs``; unheld seqs are ignored. Best effort:
        a message whose settling does not reach the server is handed out again, whole, once
        the claim lease runs out."""
        held = self._held.get(subscription)
        if held is not None:
            await self._give_back(held.end(seqs, finished=False))

    async def drop(self, subscription: str, upto: int) -> None:
        """Forget ``subscription``'s claims and consumer (it was deleted): what this handle
        holds of it counts as finished, and so do its deliveries in fan messages up to the
        deliveries stream's sequence ``upto`` that this handle fetches later."""
        held = self._held.pop(subscription, None)
        self._forgotten[subscription] = upto
        self._consumers.pop(subscription, None)
        self._per_msg.pop(subscription, None)
        self.due.forget(subscription)
        if held is not None:
            await self._give_back(held.end(held.seqs(), finished=True))

    async def close(self) -> None:
        """Give back everything held so other handles get it at once, and stop renewing."""
        self._stop()
        held, self._held = self._held, {}
        await self._give_back([bundle for each in held.values() for bundle in each.release_all()])

    def abandon(self) -> None:
        """Stop renewing and forget every claim without naking, as if the process died."""
        self._stop()
        self._held.clear()

    def _stop(self) -> None:
        self._fan.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _queued(self) -> int:
        return sum(len(held.queue) for held in self._held.values())

    def _most(self) -> int:
        # Bundles may have grown since the last fetch: bound what one fetch may bring (a
        # message is never larger than the server's max_payload, so one always fits).
        return max(PULL_BYTES, 2 * self._nc.max_payload)

    async def _distribute(self, msgs: list[Msg], now: float) -> None:
        """Queue fetched fan messages' deliveries under their subscriptions, moving out those
        that cannot wait here, and wake the workers of the others."""
        told: set[str] = set()
        moved: set[str] = set()
        touched: list[Bundle] = []
        for msg in msgs:
            log_name, per_sub, events = decode_fan(msg.data)
            bundle = Bundle(msg=msg, log=log_name, events=events, fan=True, fetched=now,
                            open={(sub, seq) for sub, seqs in per_sub.items() for seq in seqs})
            for sub, seqs in per_sub.items():
                if msg.metadata.sequence.stream <= self._forgotten.get(sub, 0):
                    bundle.open.difference_update((sub, seq) for seq in seqs)
                    bundle.spent = True
                    continue
                held = self._held.setdefault(sub, Held(sub))
                joined = held.add(bundle, seqs)
                keep = 0 if self.ordered(sub) else max(0, len(joined) - len(held.queue) + QUEUED_MOST)
                out = joined[keep:]
                if out:
                    touched.extend(held.end(out, finished=False))
                    moved.add(sub)
                if len(out) < len(joined):
                    told.add(sub)
            if not bundle.open:
                touched.append(bundle)
        self._renew_soon()
        if touched:
            await self._give_back(touched)
        if moved:
            self._announce_moved(moved)
        if told:
            self._tell(told)

    def _announce_moved(self, subscriptions: Collection[str]) -> None:
        self.due.hint(subscriptions)
        self._moved(subscriptions)

    async def _give_back(self, bundles: Iterable[Bundle]) -> None:
        """Settle ``bundles`` (once each), best effort: what does not reach the server comes
        back once the claim lease runs out."""
        unique = list({id(b): b for b in bundles}.values())
        if not unique:
            return
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError, StoreError):
            await self._settle(unique)
            await flush(self._nc, self._timeout)

    async def _settle(self, bundles: list[Bundle]) -> None:
        self.due.hint(await settle(self._js, self._names, bundles, timeout=self._timeout))

    def _renew_soon(self) -> None:
        if self._task is None and any(self._held.values()):
            self._task = asyncio.create_task(self._renew(), name="weir-nats-claims")

    async def _renew(self) -> None:
        """Every lease/3 seconds, tell the server each held message is still being worked on;
        every :data:`TICK`, move out fan deliveries of subscriptions never claimed here."""
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self._lease / 3
        while True:
            await asyncio.sleep(min(TICK, self._lease / 3))
            now = loop.time()
            await self._move_out(now)
            if now < renew_at:
                continue
            renew_at = now + self._lease / 3
            msgs = {id(msg): msg for held in self._held.values() for msg in held.messages()}
            with contextlib.suppress(nats.errors.Error):
                for msg in msgs.values():
                    if not msg.is_acked:
                        await msg.in_progress()

    async def _move_out(self, now: float) -> None:
        touched: list[Bundle] = []
        moved: list[str] = []
        for sub, held in self._held.items():
            if held.queue and not held.claimed:
                stale = held.stale(now - MOVE_AFTER)
                if stale:
                    touched.extend(held.end(stale, finished=False))
                    moved.append(sub)
        if touched:
            await self._give_back(touched)
            self._announce_moved(moved)

    def _config(self, subscription: str | None, ordered: bool) -> api.ConsumerConfig:
        """The consumer of ``subscription``, or of fan messages for ``None``."""
        if subscription is None:
            return consumer_config(FAN_CONSUMER, self._names.fan_subject, lease=self._lease, ordered=False)
        return consumer_config(self._names.consumer(subscription), self._names.delivery_subject(subscription),
                               lease=self._lease, ordered=ordered)
