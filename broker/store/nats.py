"""``nats://``: a shared :class:`~broker.store.base.EventStore` on NATS JetStream (nats-py 2.x).

Several Weir processes may use one store: ingress replicas append, dispatchers route (one per
log at a time, by lease) and claim. Names are described in :mod:`broker.store.nats_names`,
message layouts and entry seqs in :mod:`broker.store.nats_codec`.

``nats://HOST:PORT[,HOST:PORT...][?param=value&...]`` (a host without a port uses 4222):

===================  =========  =============================================================
parameter            default    meaning
===================  =========  =============================================================
``prefix``           ``weir``   names of every stream, bucket and subject (letters, digits,
                                ``-``); stores with different prefixes never meet
``replicas``         ``1``      replicas of every stream and bucket (3 on a 3-node cluster)
``claim_lease``      ``30``     seconds a dead holder's claims last before another handle
                                gets them (the consumers' ``ack_wait``)
``lease_ttl``        ``10``     seconds a dead router's lease on a log lasts
``duplicate_window`` ``120``    seconds within which routing the same entry again creates no
                                second pending delivery (the deliveries stream's window)
``timeout``          ``2``      seconds any one request to the server may take
``retention``        none       seconds the server keeps log and pending-delivery messages
                                (``max_age``), delivered or not; none: until delivered
``dead_retention``   none       seconds the server keeps dead-letter records; none: forever
``create``           ``true``   ``false``: fail (naming it) instead of creating a stream/bucket
===================  =========  =============================================================

Streams and buckets are created by the first process that needs them (a log's stream at its
first append, the others on open); a later process with other settings uses them as they are,
with a warning. An event older than ``retention`` is dropped even if not yet delivered: it must
exceed the longest outage to ride out. With ``create=false`` a missing stream or bucket is a
:class:`~broker.errors.StoreError` (not retriable) naming it, on open or at a log's first append.

* **append**: one message per append on the log's stream (file storage), so a batch is
  all-or-nothing; it returns once the server acknowledged it (stored, replicated). While the
  connection is down it fails at once with :class:`~broker.errors.StoreUnavailable`; nats-py
  reconnects in the background and appends work again when the server is back.
* **read / wait / head**: see :mod:`broker.store.nats_log`. **route / cursor**: see
  :mod:`broker.store.nats_route`: deliveries carry copies of their events, so routed log
  messages are purged soon after the cursor passed them.
* **claim / release / finish / forget**: see :mod:`broker.store.nats_claims`; when a claim
  fetches is :mod:`broker.store.nats_due`.
* **dead_letter**: see :mod:`broker.store.nats_dead`; the delivery is finished once the
  record is stored. **lease**: see :mod:`broker.store.nats_lease`.
* **limits**: ``max_events`` and ``max_bytes`` bound the log entries not yet routed (bytes as
  NATS counts them). Appends check the store-wide totals (:class:`~broker.store.nats_usage.Room`),
  so appenders in several processes may together overshoot by what they append within a
  second. Every log stream and the deliveries stream also carry both limits as their own,
  enforced by the server (``discard=new``; the deliveries stream counts messages, each a
  bundle of deliveries): a full deliveries stream stops routing, then the logs fill and
  appends are refused. Full: :class:`~broker.errors.StoreFull`.
* **stats**: ``events``/``bytes`` are the log entries not yet routed (see
  :mod:`broker.store.nats_usage`), ``pending`` the deliveries stream's messages: each is a
  bundle of 1 to 64 deliveries of one subscription or a fan message of up to 4,096 deliveries
  of many (:mod:`broker.store.nats_fan`), so ``pending`` counts fewer than the deliveries
  waiting (a count per message would need a wildcard consumer filter, see
  :mod:`broker.store.nats_names`). ``dead_letters`` is the dead-letter stream's messages.
* **close** naks every claim and deletes every lease this handle holds (when connected), so
  another process takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from nats.nuid import NUID

from broker.errors import StoreUnavailable
from broker.event import Event
from broker.store.base import DeadLetter, Delivery, LogEntry, StoreStats
from broker.store.memory import check_route
from broker.store.nats_claims import Claims
from broker.store.nats_codec import SCALE, encode_batch
from broker.store.nats_config import NatsConfig, config_from_url
from broker.store.nats_dead import DeadLetters
from broker.store.nats_io import connect, ensure_stream, mapped, set_up
from broker.store.nats_lease import Leases
from broker.store.nats_log import Heads, LogReader
from broker.store.nats_pull import Pulls
from broker.store.nats_route import Router, Watchers, notice
from broker.store.nats_usage import Room, Usage, measure

MESSAGE_OVERHEAD = 64
"""Bytes NATS adds to a stored message beyond payload and subject (an upper estimate)."""


def nats_store_from_url(
    url: str, *, max_events: int | None = None, max_bytes: int | None = None
) -> NatsStore:
    """The store a ``nats://`` URL names, not opened yet; ``ValueError`` for an invalid URL."""
    return NatsStore(config_from_url(url, max_events=max_events, max_bytes=max_bytes))


@dataclass(slots=True)
class _Session:
    """Everything that lives from :meth:`NatsStore.open` to :meth:`NatsStore.close`."""

    nc: Client
    js: JetStreamContext
    heads: Heads
    reader: LogReader
    router: Router
    claims: Claims
    leases: Leases
    dead: DeadLetters
    cursors: KeyValue
    pulls: Pulls
    """The log reader's and the dead-letter reader's fetches."""
    claim_pulls: Pulls
    """The claims' fetches: their own gate, so a thousand workers' claims never queue the
    router's reads of the log."""


class NatsStore:
    """Event store on NATS JetStream; see the module docstring."""

    def __init__(self, config: NatsConfig) -> None:
        self.config = config
        self._names = config.names
        self._owner = ""
        self._session: _Session | None = None
        self._watchers = Watchers(self._names)
        self._watchers.news = self._news
        self._recent: dict[str, dict[int, Event]] = {}
        """Entries this handle read and has not routed yet, for the copies deliveries carry."""
        self._room = Room(max_events=config.max_events, max_bytes=config.max_bytes, measure=self._measure)
        self._creating: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        if self._session is not None:
            return
        cfg, names = self.config, self._names
        self._owner = NUID().next().decode()
        nc = await connect(cfg.servers, timeout=cfg.timeout, reconnected=self._reconnected)
        try:
            js = nc.jetstream(timeout=cfg.timeout)
            with mapped("setting up the NATS store"):
                cursors, leases = await set_up(js, cfg)
        except BaseException:
            await nc.close()
            raise
        timeout, pulls, claim_pulls = cfg.timeout, Pulls(nc), Pulls(nc)
        self._session = _Session(
            nc=nc, js=js, heads=Heads(nc, js, names, timeout=timeout),
            reader=LogReader(nc, js, names, pulls=pulls, timeout=timeout),
            router=Router(nc, js, cursors, names, owner=self._owner, timeout=timeout),
            claims=Claims(nc, js, names, pulls=claim_pulls, lease=cfg.claim_lease, timeout=timeout,
                          tell=self._watchers.tell, moved=self._moved_out),
            leases=Leases(leases, names, ttl=cfg.lease_ttl, owner=self._owner, timeout=timeout),
            dead=DeadLetters(js, names, pulls=pulls, timeout=timeout), cursors=cursors, pulls=pulls,
            claim_pulls=claim_pulls)
        await self._watchers.listen(nc, self._owner)

    async def close(self) -> None:
        """Hand back every claim (nak) and lease, then disconnect. Idempotent."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.nc.is_connected:
            await session.claims.close()
            await session.leases.close()
        else:  # nothing would reach the server: the claim lease and lease TTL hand them over
            session.claims.abandon()
            session.leases.abandon()
        await self._shut(session, graceful=session.nc.is_connected)

    async def abandon(self) -> None:
        """Disconnect without handing back claims or leases, as if the process died: others
        get them once the claim lease and the lease TTL run out (for failure tests)."""
        session, self._session = self._session, None
        if session is not None:
            session.claims.abandon()
            session.leases.abandon()
            await self._shut(session, graceful=False)

    async def append(self, log: str, events: Sequence[Event]) -> None:
        s = self._connected()
        if not events:
            return
        payload = encode_batch(events)
        subject = self._names.log_subject(log, len(events))
        size = len(payload) + len(subject) + MESSAGE_OVERHEAD
        await self._room.check(len(events), size)
        with mapped(f"appending to {log}"):
            try:
                ack = await s.js.publish(subject, payload)
            except nats.js.errors.NoStreamResponseError:
                # The log's first append: one task creates the stream, the others wait for it.
                async with self._creating.setdefault(log, asyncio.Lock()):
                    try:
                        ack = await s.js.publish(subject, payload)
                    except nats.js.errors.NoStreamResponseError:
                        await ensure_stream(s.js, self.config.log_stream(log), create=self.config.create)
                        ack = await s.js.publish(subject, payload)
        self._room.added(len(events), size)
        await s.heads.announce(log, ack.seq * SCALE)

    async def wait(self, log: str, after: int, timeout: float) -> None:
        if self._session is not None:
            await self._connected().heads.wait(log, after, timeout)

    async def read(self, log: str, after: int, limit: int) -> Sequence[LogEntry]:
        s = self._connected()
        found = await s.reader.read(log, after, limit)
        if found:
            recent = self._recent.setdefault(log, {})
            if len(recent) > 100_000:
                recent.clear()  # a router that reads without routing; route fetches what it needs
            recent.update((e.seq, e.event) for e in found)
            s.heads.seen(log, found[-1].seq)
        return found

    async def head(self, log: str) -> int:
        return await self._connected().heads.head(log)

    async def cursor(self, log: str) -> int:
        return await self._connected().router.cursor(log)

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        # Each subscription has one consumer, which hands out an ordered subscription's
        # deliveries one at a time (max_ack_pending=1); ``ordered`` only keeps them unbundled.
        s = self._connected()
        head = s.heads.known(log)
        check_route(log, head if upto <= head else await s.heads.head(log), upto, deliveries)
        cursor = await s.router.cached_cursor(log)
        if upto <= cursor:
            return
        # Bundling sorts and de-duplicates each subscription's seqs; here only the distinct
        # seqs are looked at (a route to 100 Triggers has 100 pairs per seq).
        pairs = [(seq, sub) for seq, sub in deliveries if seq > cursor]
        seqs = sorted({seq for seq, _ in pairs})
        recent = self._recent.get(log, {})
        events = {seq: recent[seq] for seq in seqs if seq in recent}
        missing = [seq for seq in seqs if seq not in events]
        if missing:
            events.update(await s.reader.events(log, missing))
        routed = await s.reader.routed(log, upto)
        direct, fanned = await s.router.route(log, upto, pairs, events, routed=routed, ordered=ordered)
        s.claims.due.news(direct, fanned)
        for seq in [seq for seq in recent if seq <= upto]:
            del recent[seq]

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        s = self._connected()
        await self._watchers.listen(s.nc, self._owner, claiming=True)  # other routers' news
        return await s.claims.claim(subscription, limit, ordered)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        s = self._connected()
        await s.claims.release(subscription, seqs)
        self._unblocked(s, subscription)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        s = self._connected()
        await s.claims.finish(subscription, seqs)
        self._unblocked(s, subscription)

    async def dead_letter(self, record: DeadLetter) -> None:
        s = self._connected()
        await s.dead.record(record)
        await s.claims.finish(record.subscription, [record.seq])
        self._unblocked(s, record.subscription)

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        return await self._connected().dead.read(log)

    async def forget(self, subscription: str) -> None:
        """Delete the subscription's consumer and messages. Its deliveries in fan messages
        stored by then are dropped when this handle fetches them; another process that fetches
        one first moves them to the subscription's subject, where they stay (counted in
        ``pending``) until it is forgotten again or ``retention`` ends."""
        s = self._connected()
        stream = self._names.deliveries_stream
        with mapped(f"forgetting {subscription}"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await s.js.delete_consumer(stream, self._names.consumer(subscription))
            await s.js.purge_stream(stream, subject=self._names.delivery_subject(subscription))
            last = (await s.js.stream_info(stream)).state.last_seq
        await s.claims.drop(subscription, last)

    async def lease(self, log: str) -> bool:
        s = self._session
        return s is not None and await s.leases.held(log)

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        self._watchers.add(notify)
        if self._session is not None:
            self._watchers.listen_soon(self._session.nc, self._owner)

    async def stats(self) -> StoreStats:
        usage = await self._measure()
        self._room.measured(usage)
        return StoreStats(events=usage.log_events, bytes=usage.log_bytes, pending=usage.pending,
                          dead_letters=usage.dead_letters)

    def _news(self, direct: Collection[str], fanned: bool) -> None:
        if self._session is not None:
            self._session.claims.due.news(direct, fanned)

    def _moved_out(self, subscriptions: Collection[str]) -> None:
        """Deliveries of fan messages were published on ``subscriptions``' own subjects: wake
        this process's workers and tell the other handles."""
        self._watchers.tell(subscriptions)
        s = self._session
        if s is not None and s.nc.is_connected:
            body = notice(self._owner, subscriptions, subscriptions)
            task = asyncio.get_running_loop().create_task(s.nc.publish(self._names.wake_subject, body))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _unblocked(self, s: _Session, subscription: str) -> None:
        """An ordered subscription's next delivery is handed out only once the held one ends, so
        a claim just before came back short: tell the watchers it is worth claiming again now."""
        if s.claims.ordered(subscription):
            self._watchers.tell([subscription])

    def _connected(self) -> _Session:
        s = self._session
        if s is None:
            raise StoreUnavailable("the NATS store is not open")
        if not s.nc.is_connected:
            raise StoreUnavailable("not connected to the NATS server (reconnecting)")
        return s

    async def _measure(self) -> Usage:
        s = self._connected()
        return await measure(s.nc, s.js, s.cursors, self._names, timeout=self.config.timeout)

    async def _reconnected(self) -> None:
        if self._session is not None:
            self._session.reader.reset()

    async def _shut(self, session: _Session, *, graceful: bool) -> None:
        await self._watchers.stop()
        await session.heads.close()
        await session.router.close()
        await session.pulls.close()
        await session.claim_pulls.close()
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
            if graceful:
                await session.reader.close()
            await session.nc.close()
