"""Claims of the NATS store: pending deliveries handed out by one durable consumer per subscription.

Each subscription has a durable pull consumer on the deliveries stream, filtered to its
subject, with explicit acks and ``ack_wait`` = the claim lease. A claim is a fetch: JetStream
hands a message to one fetcher at a time, so the claim is exclusive across every handle and
process. A message carries a bundle of deliveries; this handle keeps what it fetched
(:mod:`broker.store.nats_held`) until each delivery is finished, dead-lettered or released,
and then acks the message, naks it (all released: claimable again at once), or publishes the
released ones again before acking it. :meth:`Claims.close` gives back everything held the
same way. A background task sends "in progress" for every held message each lease/3 seconds,
so a long delivery keeps its claim; when the holder dies, the server hands its messages out
again once the lease ends (deliveries of them already finished are then delivered twice).
Ordered subscriptions use ``max_ack_pending=1`` and one delivery per message: the next
delivery is handed out only once the previous one is acked (the consumer is updated when a
subscription switches between ordered and unordered). The deliveries stream is a work queue,
so an acked message is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from broker.errors import StoreUnavailable
from broker.store.base import Delivery
from broker.store.bundle import BUNDLE_EVENTS, encode_bundle
from broker.store.nats_codec import decode_bundle, encode_event
from broker.store.nats_held import Bundle, Held
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls, flush

log = logging.getLogger(__name__)

UNORDERED_MAX_ACK_PENDING = 20_000
"""Deliveries of one unordered subscription held at once across all processes."""
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


class Claims:
    """The deliveries this handle holds, per subscription; see the module docstring."""

    def __init__(
        self, nc: Client, js: JetStreamContext, names: Names, *, pulls: Pulls, lease: float, timeout: float
    ) -> None:
        self._nc = nc
        self._pulls = pulls
        self._js = js
        self._names = names
        self._lease = lease
        self._timeout = timeout
        self._held: dict[str, Held] = {}
        self._per_msg: dict[str, float] = {}
        """subscription -> deliveries per message in its last fetch (full bundles before one)."""
        self._consumers: dict[str, bool] = {}
        """subscription -> ``ordered`` of the consumer config this handle last applied."""
        self._task: asyncio.Task[None] | None = None

    def ordered(self, subscription: str) -> bool:
        """Whether this handle last claimed ``subscription`` as ordered."""
        return self._consumers.get(subscription) is True

    async def claim(self, subscription: str, limit: int, ordered: bool) -> list[Delivery]:
        held = self._held.setdefault(subscription, Held(subscription))
        if limit <= 0 or (ordered and held.issued):
            return []  # ordered: the server hands out nothing while this handle holds one
        want = 1 if ordered else limit
        if len(held.queue) >= want:
            return held.take(want)
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
            # Bundles may have grown since the last fetch: bound what one fetch may bring (a
            # message is never larger than the server's max_payload, so one always fits).
            most = max(PULL_BYTES, 2 * self._nc.max_payload)
            try:
                msgs = await self._pulls.pull(stream, consumer, batch, max_bytes=most,
                                              timeout=min(self._timeout, PULL_TIMEOUT), expires=CLAIM_WAIT)
            except nats.errors.TimeoutError:
                self._consumers.pop(subscription, None)  # deleted by forget elsewhere? create it again
                raise StoreUnavailable(
                    f"claiming deliveries of {subscription}: no answer to a fetch within {PULL_TIMEOUT} s",
                    retry_after=PULL_RETRY,
                ) from None
        count = 0
        for msg in msgs:
            log_name, deliveries = decode_bundle(msg.data)
            held.add(msg, log_name, deliveries)
            count += len(deliveries)
        if msgs:
            self._per_msg[subscription] = count / len(msgs)
        if held and self._task is None:
            self._task = asyncio.create_task(self._renew(), name="weir-nats-claims")
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
        touched = held.end(list(seqs), finished=True)
        if any(not bundle.open for bundle in touched):
            with mapped(f"finishing deliveries of {subscription}"):
                await self._settle(subscription, touched)
                await flush(self._nc, self._timeout)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        """Give back the held deliveries among ``seqs``; unheld seqs are ignored. Best effort:
        a message whose settling does not reach the server is handed out again, whole, once
        the claim lease runs out."""
        held = self._held.get(subscription)
        if held is None:
            return
        touched = held.end(list(seqs), finished=False)
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError, StoreUnavailable):
            await self._settle(subscription, touched)
            if touched:
                await flush(self._nc, self._timeout)

    def drop(self, subscription: str) -> None:
        """Forget ``subscription``'s claims and consumer (it was deleted)."""
        self._held.pop(subscription, None)
        self._consumers.pop(subscription, None)
        self._per_msg.pop(subscription, None)

    async def close(self) -> None:
        """Give back everything held so other handles get it at once, and stop renewing."""
        self._stop()
        held, self._held = self._held, {}
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError, StoreUnavailable):
            for subscription, bundles in held.items():
                await self._settle(subscription, bundles.release_all())
            if held:
                await flush(self._nc, self._timeout)

    def abandon(self) -> None:
        """Stop renewing and forget every claim without naking, as if the process died."""
        self._stop()
        self._held.clear()

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _settle(self, subscription: str, bundles: list[Bundle]) -> None:
        """Publish again what was released from each of ``bundles``, then ack or nak those with
        an outcome for every delivery (see :mod:`broker.store.nats_held`)."""
        for bundle in bundles:
            if not bundle.open and not bundle.spent:
                await bundle.msg.nak()
                continue
            back = bundle.to_give_back()
            if back:
                body = encode_bundle(bundle.log, [(seq, encode_event(e)) for seq, e in back.items()])
                # A retry after a publish that timed out but was stored must not store it twice;
                # the message's stream sequence keeps the id apart from any other give-back.
                seqs = list(back)
                msg_id = f"{bundle.msg.metadata.sequence.stream}:back:{seqs[0]}-{seqs[-1]}-{len(seqs)}"
                await self._js.publish(self._names.delivery_subject(subscription), body,
                                       timeout=self._timeout, headers={"Nats-Msg-Id": msg_id})
                bundle.given_back()
            if not bundle.open:
                await bundle.msg.ack()

    async def _renew(self) -> None:
        """Every lease/3 seconds, tell the server each held message is still being worked on."""
        while True:
            await asyncio.sleep(self._lease / 3)
            msgs = [msg for held in self._held.values() for msg in held.messages()]
            with contextlib.suppress(nats.errors.Error):
                for msg in msgs:
                    if not msg.is_acked:
                        await msg.in_progress()

    def _config(self, subscription: str, ordered: bool) -> api.ConsumerConfig:
        name = self._names.consumer(subscription)
        return api.ConsumerConfig(
            name=name, durable_name=name, filter_subject=self._names.delivery_subject(subscription),
            deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self._lease,
            max_deliver=-1, max_ack_pending=1 if ordered else UNORDERED_MAX_ACK_PENDING,
        )
