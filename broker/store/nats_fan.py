"""Fan messages of the NATS store: one message for the deliveries of a route to many subscriptions.

A route of one event to 1,000 Triggers would otherwise publish 1,000 messages, and each
Trigger's consumer would fetch and ack one: with few events per route (the bench offers 2-80
events/s to 1,000 Triggers) that was most of the store's cost, whatever the bundle size. When
a route has deliveries for at least :data:`FAN_MIN` unordered subscriptions, the router writes
them instead as fan messages on one subject, ``<prefix>.dl.fan``, fetched by one durable consumer
(:data:`FAN_CONSUMER`) that every handle shares. A handle that fetches one keeps it until each
of its deliveries has an outcome (:mod:`broker.store.nats_held`) and queues the deliveries under
their subscriptions, where claims take them (:mod:`broker.store.nats_claims`). Deliveries that
cannot wait there (their subscription is ordered here, its queue is full, or nobody claimed it
for a while) are moved out: published again on their subscription's own subject, like a
released delivery.

Layout (big-endian): ``u32`` header length, the header (JSON: a list of ``[seqs, subscriptions]``
groups, each subscription of a group getting each of its seqs), then a bundle of the events
(:mod:`broker.store.bundle`, each event once). A message holds at most :data:`FAN_DELIVERIES`
deliveries and :data:`FAN_HEADER_BYTES` of subscription names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from broker.event import Event
from broker.store.bundle import BUNDLE_EVENTS, cut, decode_bundle, encode_bundle
from broker.store.nats_codec import decode_event_at
from broker.store.nats_due import Due
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls

log = logging.getLogger(__name__)

FAN_MIN = 2
"""Unordered subscriptions a route must have deliveries for before they go in fan messages;
below it each subscription gets bundles of its own (one fetch either way, and no moving out)."""
FAN_DELIVERIES = 4096
"""Most deliveries in one fan message: its holder keeps it until all have an outcome."""
FAN_HEADER_BYTES = 256 * 1024
"""Most bytes of subscription names in one fan message (the server's ``max_payload`` is about
1 MiB by default, and the events take up to 256 KiB more)."""
FAN_BATCH = 16
"""Fan messages one fetch asks for."""
FAN_CONSUMER = "fan"
"""The durable consumer of fan messages (subscription consumers' names always hold ``_``)."""

Groups = list[tuple[list[int], list[str]]]
_LEN = struct.Struct(">I")


def fan_messages(
    per_sub: Mapping[str, Sequence[int]], encode: Callable[[int], bytes]
) -> list[tuple[Groups, list[tuple[int, bytes]]]]:
    """``per_sub``'s deliveries as fan messages ``(groups, [(seq, encoded event), ...])``.

    Subscriptions are split (sorted) into runs of at most :data:`FAN_HEADER_BYTES` of names;
    each run's seqs are cut into bundles of at most :data:`FAN_DELIVERIES` // run length
    events. The same input always gives the same messages, so a route done again is dropped
    by the stream's duplicate window.
    """
    bodies: dict[int, bytes] = {}

    def size(seq: int) -> int:
        body = bodies.get(seq)
        if body is None:
            body = bodies[seq] = encode(seq)
        return len(body)

    out: list[tuple[Groups, list[tuple[int, bytes]]]] = []
    for run in _runs(sorted(per_sub)):
        wanted = {sub: set(per_sub[sub]) for sub in run}
        seqs = sorted(set().union(*wanted.values()))
        most = max(1, min(BUNDLE_EVENTS, FAN_DELIVERIES // len(run)))
        for chunk in cut(seqs, size, most=most):
            groups: dict[tuple[int, ...], list[str]] = {}
            for sub in run:
                mine = tuple(seq for seq in chunk if seq in wanted[sub])
                if mine:
                    groups.setdefault(mine, []).append(sub)
            events = [(seq, bodies[seq]) for seq in chunk]
            out.append(([(list(seqs), subs) for seqs, subs in groups.items()], events))
    return out


def _runs(subs: list[str]) -> list[list[str]]:
    runs: list[list[str]] = [[]]
    total = 0
    for sub in subs:
        length = len(sub.encode()) + 4
        if runs[-1] and total + length > FAN_HEADER_BYTES:
            runs.append([])
            total = 0
        runs[-1].append(sub)
        total += length
    return runs if runs[0] else []


def encode_fan(log: str, groups: Groups, events: Sequence[tuple[int, bytes]]) -> tuple[bytes, str]:
    """A fan message's payload, and its message id (equal for equal messages)."""
    header = orjson.dumps(groups)
    msg_id = f"{log}:{events[0][0]}:{events[-1][0]}:fan:{len(header)}:{zlib.crc32(header):08x}"
    return _LEN.pack(len(header)) + header + encode_bundle(log, events), msg_id


def decode_fan(payload: bytes) -> tuple[str, dict[str, list[int]], dict[int, Event]]:
    """``(log, subscription -> seqs, seq -> event)`` of a fan message."""
    (size,) = _LEN.unpack_from(payload, 0)
    groups = orjson.loads(payload[4 : 4 + size])
    log, deliveries = decode_bundle(payload[4 + size :], decode_event_at)
    per_sub: dict[str, list[int]] = {}
    for seqs, subs in groups:
        for sub in subs:
            per_sub.setdefault(sub, []).extend(seqs)
    return log, per_sub, dict(deliveries)


class FanFetches:
    """One handle's fetches from the fan consumer: one at a time, and a claim that wants one
    while it is under way waits for that one. ``deliver`` gets the messages and the loop time
    of the fetch; no fetch starts while ``room()`` is false. A failed fetch is logged and left
    to the next claim (the subscriptions' own fetches report the server's trouble)."""

    def __init__(
        self, js: JetStreamContext, names: Names, *, pulls: Pulls, config: api.ConsumerConfig, due: Due,
        deliver: Callable[[list[Msg], float], Awaitable[None]], room: Callable[[], bool],
        most: Callable[[], int], timeout: float, wait: float,
    ) -> None:
        self._js, self._names, self._pulls, self._config, self._due = js, names, pulls, config, due
        self._deliver, self._room, self._most = deliver, room, most
        self._timeout, self._wait = timeout, wait
        self._consumer = False
        self._task: asyncio.Task[None] | None = None

    async def fetch(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._fetch(), name="weir-nats-fan")
            self._task.add_done_callback(self._done)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("nats: fetching fan messages failed (the next claim tries again): %s", exc)

    async def _fetch(self) -> None:
        if not self._room():
            return
        stream, now = self._names.deliveries_stream, asyncio.get_running_loop().time()
        started = self._due.fan_start()
        with mapped("claiming fan deliveries"):
            if not self._consumer:
                await self._js.add_consumer(stream, self._config, timeout=self._timeout)
                self._consumer = True
            try:
                msgs = await self._pulls.pull(stream, FAN_CONSUMER, FAN_BATCH, max_bytes=self._most(),
                                              timeout=self._timeout, expires=self._wait)
            except nats.errors.TimeoutError:
                self._consumer = False  # deleted meanwhile? create it again
                raise
        self._due.fan_pulled(now, more=len(msgs) >= FAN_BATCH, started=started)
        await self._deliver(msgs, now)
