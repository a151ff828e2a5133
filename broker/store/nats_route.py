"""Routing in the NATS store: pending deliveries, the router cursor, and pruning the log.

:meth:`Router.route` publishes a subscription's deliveries of one route in bundles
(:mod:`broker.store.bundle`): a message of up to 64 deliveries carrying copies of their events,
seqs ascending, with the header ``Nats-Msg-Id: <log>:<first seq>:<last seq>:<sub>``. Deliveries
of an ordered subscription go one per message, so a release never has to reorder a bundle (see
:mod:`broker.store.nats_claims`). When a route has deliveries for at least two unordered
subscriptions, theirs go in fan messages instead (:mod:`broker.store.nats_fan`, message id
``<log>:<first seq>:<last seq>:fan:<header digest>``). The publishes are pipelined and all
their acks awaited before the cursor (a KV key per log, written with compare-and-set so it
never moves back) is set. A router that crashes in between leaves the cursor behind; the next
one routes the same entries again from the same cursor, which cuts the same bundles as far as
the first route went, and the stream drops those as duplicates (within its duplicate window). A
bundle cut differently (the log had grown) is stored again: its deliveries already recorded are
then delivered twice, never lost. Then it publishes a core-NATS notice naming the subscriptions
and which of them got messages of their own, which other handles' :meth:`EventStore.watch`
callbacks and claims (:mod:`broker.store.nats_due`) get (:class:`Watchers`).

Log messages wholly below the cursor are purged a moment later (one purge per log per
:data:`PRUNE_DELAY`, however many routes happened meanwhile): every delivery has its own copy
of the event, so nothing else refers to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from broker.event import Event
from broker.store.bundle import BUNDLE_EVENTS, Encoded, bundles_of, encode_bundle
from broker.store.fan import Groups, fan_messages, fanned
from broker.store.nats_codec import SCALE, decode_cursor, encode_cursor, encode_event
from broker.store.nats_fan import encode_fan
from broker.store.nats_io import mapped
from broker.store.nats_names import Names

log = logging.getLogger(__name__)

PRUNE_DELAY = 0.2
"""Seconds between a route and the purge of the log messages it passed (purges coalesce)."""
CAS_ATTEMPTS = 5


class Router:
    """Cursors, deliveries and pruning of the logs this handle routes; see the module docstring."""

    def __init__(
        self, nc: Client, js: JetStreamContext, cursors: KeyValue, names: Names, *, owner: str, timeout: float
    ) -> None:
        self._nc = nc
        self._js = js
        self._cursors = cursors
        self._names = names
        self._owner = owner
        self._timeout = timeout
        self._known: dict[str, tuple[int, int]] = {}
        """log -> (cursor, KV revision) as last read or written by this handle."""
        self._targets: dict[str, int] = {}
        self._purged: dict[str, int] = {}
        self._pruning: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def cursor(self, log_name: str) -> int:
        """The cursor as stored now."""
        return (await self._load(log_name))[0]

    async def cached_cursor(self, log_name: str) -> int:
        """The cursor as this handle last saw it (loaded on first use)."""
        known = self._known.get(log_name)
        return known[0] if known is not None else await self.cursor(log_name)

    async def route(
        self, log_name: str, upto: int, pairs: Sequence[tuple[int, str]], events: Mapping[int, Event],
        *, routed: int, ordered: Collection[str] = (),
    ) -> tuple[set[str], bool]:
        """Record ``pairs`` (all above the cursor, ``events`` holding their events), then move
        the cursor to ``upto`` and announce the subscriptions. ``routed``: entries of ``upto``'s
        message at or below ``upto`` (see :func:`~broker.store.nats_codec.encode_cursor`);
        ``ordered``: subscriptions whose deliveries go one per message. Returns the
        subscriptions given messages of their own, and whether fan messages were written."""
        with mapped(f"routing {log_name}"):
            direct, fanned = await self._publish(log_name, pairs, events, ordered)
            await self._advance(log_name, upto, routed)
            if pairs:
                body = notice(self._owner, {sub for _, sub in pairs}, direct)
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(self._names.wake_subject, body)
        self._prune_later(log_name, upto)
        return direct, fanned

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._pruning.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pruning.clear()

    async def _publish(
        self, log_name: str, pairs: Sequence[tuple[int, str]], events: Mapping[int, Event],
        ordered: Collection[str] = (),
    ) -> tuple[set[str], bool]:
        """Publish ``pairs``; returns the subscriptions given messages of their own, and whether
        fan messages were published."""
        futures: list[asyncio.Future[api.PubAck]] = []
        direct: set[str] = set()
        fanned = False
        try:
            own, fan = split(pairs, events, ordered)
            for sub, bundle in own:
                first, last = bundle[0][0], bundle[-1][0]
                direct.add(sub)
                futures.append(await self._js.publish_async(
                    self._names.delivery_subject(sub), encode_bundle(log_name, bundle),
                    headers={"Nats-Msg-Id": f"{log_name}:{first}:{last}:{sub}"}))
            for groups, chunk in fan:
                body, msg_id = encode_fan(log_name, groups, chunk)
                fanned = True
                futures.append(await self._js.publish_async(
                    self._names.fan_subject, body, headers={"Nats-Msg-Id": msg_id}))
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        finally:
            for future in futures:
                future.cancel()
        return direct, fanned

    async def _load(self, log_name: str) -> tuple[int, int]:
        with mapped(f"reading the cursor of {log_name}"):
            try:
                entry = await self._cursors.get(self._names.key(log_name))
            except nats.js.errors.KeyNotFoundError:
                known = (0, 0)
            else:
                known = (decode_cursor(entry.value)[0], entry.revision or 0)
        self._known[log_name] = known
        return known

    async def _advance(self, log_name: str, upto: int, routed: int) -> None:
        """Set the cursor to ``upto`` unless it is already there or beyond (compare-and-set)."""
        key, value = self._names.key(log_name), encode_cursor(upto, routed)
        cursor, revision = self._known.get(log_name) or await self._load(log_name)
        for _ in range(CAS_ATTEMPTS):
            if cursor >= upto:
                return
            try:
                if revision:
                    revision = await self._cursors.update(key, value, last=revision)
                else:
                    revision = await self._cursors.create(key, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                cursor, revision = await self._load(log_name)
                continue
            self._known[log_name] = (upto, revision)
            return
        raise nats.js.errors.APIError(description=f"the cursor of {log_name} keeps changing")

    def _prune_later(self, log_name: str, upto: int) -> None:
        last = upto // SCALE  # the last message whose every entry is at or below the cursor
        if last <= max(self._purged.get(log_name, 0), self._targets.get(log_name, 0)):
            return
        self._targets[log_name] = last
        if log_name not in self._pruning:
            self._pruning[log_name] = asyncio.create_task(self._prune(log_name))

    async def _prune(self, log_name: str) -> None:
        try:
            await asyncio.sleep(PRUNE_DELAY)
            last = self._targets.pop(log_name)
            # Purge removes the messages below seq, so seq = last + 1 keeps every unrouted entry.
            await asyncio.wait_for(self._js.purge_stream(self._names.log_stream(log_name), seq=last + 1),
                                   self._timeout)
            self._purged[log_name] = max(self._purged.get(log_name, 0), last)
        except (TimeoutError, nats.errors.Error) as exc:
            log.debug("pruning %s failed (the next route retries): %s", log_name, exc)
        finally:
            self._pruning.pop(log_name, None)
            if log_name in self._targets and not self._closed:
                self._pruning[log_name] = asyncio.create_task(self._prune(log_name))


def split(
    pairs: Sequence[tuple[int, str]], events: Mapping[int, Event], ordered: Collection[str] = ()
) -> tuple[list[tuple[str, list[tuple[int, bytes]]]], list[tuple[Groups, list[tuple[int, bytes]]]]]:
    """``pairs`` as bundles of one subscription each (:func:`broker.store.bundle.bundles_of`;
    an ordered subscription's hold one delivery) and fan messages
    (:func:`broker.store.fan.fan_messages`): the unordered subscriptions' deliveries go in fan
    messages when there are at least :data:`~broker.store.fan.FAN_MIN` of them."""
    fan = fanned(pairs, ordered)
    own: dict[str, list[int]] = {}
    for seq, sub in pairs:
        if sub not in fan:
            own.setdefault(sub, []).append(seq)
    encode = Encoded(lambda seq: encode_event(events[seq]))
    bundles = bundles_of(own, encode, most=lambda sub: 1 if sub in ordered else BUNDLE_EVENTS)
    return bundles, fan_messages(fan, encode) if fan else []


def notice(owner: str, subscriptions: Collection[str], direct: Collection[str]) -> bytes:
    """A wake notice: ``subscriptions`` got deliveries, ``direct`` (some of them) on their own
    subjects (the others' are in fan messages)."""
    return orjson.dumps([owner, sorted(subscriptions), sorted(direct)])


class Watchers:
    """This handle's :meth:`EventStore.watch` callbacks and the subscription to wake notices.

    A notice from another handle names subscriptions it routed deliveries for; the callbacks
    are also told when this handle ends an ordered subscription's delivery (:meth:`tell`).
    """

    def __init__(self, names: Names) -> None:
        self._names = names
        self._callbacks: list[Callable[[Collection[str]], None]] = []
        self.news: Callable[[Collection[str], bool], None] = lambda direct, fanned: None
        """Told of every notice from another handle: the subscriptions given messages of
        their own, and whether any went in fan messages."""
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, notify: Callable[[Collection[str]], None]) -> None:
        self._callbacks.append(notify)

    def tell(self, subscriptions: Collection[str]) -> None:
        for notify in list(self._callbacks):
            notify(subscriptions)

    def listen_soon(self, nc: Client, owner: str) -> None:
        """:meth:`listen` in a task (for synchronous callers); a notice sent meanwhile is
        missed, which only delays a claim to the worker's next poll."""
        task = asyncio.get_running_loop().create_task(self.listen(nc, owner))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self, nc: Client, owner: str, *, claiming: bool = False) -> None:
        """Subscribe to wake notices once there is a callback or ``claiming`` (notices from
        ``owner`` are this handle's own and ignored)."""
        if self._sub is not None or not (self._callbacks or claiming):
            return

        async def on_notice(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                sender, subscriptions, *rest = orjson.loads(msg.data)
                if sender != owner:
                    direct = rest[0] if rest else subscriptions
                    self.news(direct, len(direct) < len(subscriptions))
                    self.tell(subscriptions)

        with contextlib.suppress(nats.errors.Error):
            self._sub = await nc.subscribe(self._names.wake_subject, cb=on_notice)

    async def stop(self) -> None:
        """Forget the subscription (it ends with its connection)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sub = None
