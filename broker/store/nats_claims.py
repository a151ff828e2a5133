"""Claims of the NATS store: pending deliveries handed out by one durable consumer per subscription.

Each subscription has a durable pull consumer on the deliveries stream, filtered to its
subject, with explicit acks and ``ack_wait`` = the claim lease. A claim is a fetch: JetStream
hands a message to one fetcher at a time, so the claim is exclusive across every handle and
process. This handle keeps the fetched messages by entry seq until :meth:`Claims.finish`
(ack), :meth:`Claims.release` (nak: claimable again at once) or :meth:`Claims.close`
(naks everything held). A background task sends "in progress" for every held message each
lease/3 seconds, so a long delivery keeps its claim; when the holder dies, the server hands
its messages out again once the lease ends. Ordered subscriptions use ``max_ack_pending=1``:
the next delivery is handed out only once the previous one is acked (the consumer is updated
when a subscription switches between ordered and unordered). The deliveries stream is a work
queue, so an acked delivery is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from broker.errors import StoreUnavailable
from broker.store.base import Delivery
from broker.store.nats_codec import decode_delivery
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
        self._held: dict[str, dict[int, list[Msg]]] = {}
        """subscription -> entry seq -> the messages carrying it (a re-routed copy may add one)."""
        self._consumers: dict[str, bool] = {}
        """subscription -> ``ordered`` of the consumer config this handle last applied."""
        self._task: asyncio.Task[None] | None = None

    def ordered(self, subscription: str) -> bool:
        """Whether this handle last claimed ``subscription`` as ordered."""
        return self._consumers.get(subscription) is True

    async def claim(self, subscription: str, limit: int, ordered: bool) -> list[Delivery]:
        held = self._held.setdefault(subscription, {})
        if limit <= 0 or (ordered and held):
            return []  # ordered: the server hands out nothing while this handle holds one
        stream, consumer = self._names.deliveries_stream, self._names.consumer(subscription)
        with mapped(f"claiming deliveries of {subscription}"):
            if self._consumers.get(subscription) is not ordered:
                config = self._config(subscription, ordered)
                await self._js.add_consumer(stream, config, timeout=self._timeout)
                self._consumers[subscription] = ordered
            try:
                # Ordered: the server hands out one at a time; asking for more would keep the
                # request open until it expires.
                batch = 1 if ordered else limit
                msgs = await self._pulls.pull(stream, consumer, batch,
                                              timeout=min(self._timeout, PULL_TIMEOUT), expires=CLAIM_WAIT)
            except nats.errors.TimeoutError:
                self._consumers.pop(subscription, None)  # deleted by forget elsewhere? create it again
                raise StoreUnavailable(
                    f"claiming deliveries of {subscription}: no answer to a fetch within {PULL_TIMEOUT} s",
                    retry_after=PULL_RETRY,
                ) from None
        out: list[Delivery] = []
        for msg in msgs:
            log_name, seq, event = decode_delivery(msg.data)
            copies = held.get(seq)
            if copies is None:
                held[seq] = [msg]
                out.append(Delivery(log=log_name, subscription=subscription, seq=seq, event=event))
            elif not any(m.reply == msg.reply for m in copies):
                copies.append(msg)
        if out and self._task is None:
            self._task = asyncio.create_task(self._renew(), name="weir-nats-claims")
        out.sort(key=lambda d: d.seq)
        return out

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        """Ack the held deliveries among ``seqs`` (unheld seqs are ignored); returns once the
        server has received the acks (one round trip, not one per ack).

        The server confirms nothing more (awaiting a confirmation per ack halves throughput): an
        ack lost with the connection means the delivery is handed out again once the claim lease
        ends, which at-least-once delivery allows. If the round trip fails this raises
        ``StoreUnavailable``; the acks are sent after a reconnect.
        """
        held = self._held.get(subscription, {})
        msgs = [m for seq in dict.fromkeys(seqs) for m in held.pop(seq, [])]
        if not msgs:
            return
        with mapped(f"finishing deliveries of {subscription}"):
            for msg in msgs:
                if not msg.is_acked:
                    await msg.ack()
            await flush(self._nc, self._timeout)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        """Nak the held deliveries among ``seqs``; unheld seqs are ignored. Best effort: a nak
        that does not reach the server is replaced by the claim lease running out."""
        held = self._held.get(subscription, {})
        msgs = [m for seq in dict.fromkeys(seqs) for m in held.pop(seq, [])]
        await self._nak(msgs)

    def drop(self, subscription: str) -> None:
        """Forget ``subscription``'s claims and consumer (it was deleted)."""
        self._held.pop(subscription, None)
        self._consumers.pop(subscription, None)

    async def close(self) -> None:
        """Nak everything held so other handles get it at once, and stop renewing."""
        self._stop()
        held, self._held = self._held, {}
        await self._nak([m for msgs in held.values() for copies in msgs.values() for m in copies])

    def abandon(self) -> None:
        """Stop renewing and forget every claim without naking, as if the process died."""
        self._stop()
        self._held.clear()

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _nak(self, msgs: list[Msg]) -> None:
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
            for msg in msgs:
                if not msg.is_acked:
                    await msg.nak()
            if msgs:
                await flush(self._nc, self._timeout)

    async def _renew(self) -> None:
        """Every lease/3 seconds, tell the server each held delivery is still being worked on."""
        while True:
            await asyncio.sleep(self._lease / 3)
            msgs = [m for held in self._held.values() for copies in held.values() for m in copies]
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
