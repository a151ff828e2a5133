"""Fan messages on the NATS store (:mod:`broker.store.fan`), and fetching them.

The router writes fan messages on one subject, ``<prefix>.dl.fan``, fetched by one durable
consumer (:data:`FAN_CONSUMER`) that every handle shares; the message id is
``<log>:<first seq>:<last seq>:fan:<header length>:<header crc32>``. A handle that fetches one
keeps it until each of its deliveries has an outcome (:mod:`broker.store.nats_held`) and queues
the deliveries under their subscriptions, where claims take them
(:mod:`broker.store.nats_claims`). Deliveries that cannot wait there (their subscription is
ordered here, its queue is full, or nobody claimed it for a while) are moved out: published
again on their subscription's own subject, like a released delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from broker.event import Event
from broker.store import fan
from broker.store.fan import Groups
from broker.store.nats_codec import decode_event_at
from broker.store.nats_due import Due
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls

log = logging.getLogger(__name__)

FAN_BATCH = 16
"""Fan messages one fetch asks for."""
FAN_CONSUMER = "fan"
"""The durable consumer of fan messages (subscription consumers' names always hold ``_``)."""



def encode_fan(log: str, groups: Groups, events: Sequence[tuple[int, bytes]]) -> tuple[bytes, str]:
    """A fan message's payload, and its message id (equal for equal messages)."""
    payload, header = fan.encode_fan(log, groups, events)
    return payload, f"{log}:{events[0][0]}:{events[-1][0]}:fan:{len(header)}:{zlib.crc32(header):08x}"


def decode_fan(payload: bytes) -> tuple[str, dict[str, list[int]], dict[int, Event]]:
    """``(log, subscription -> seqs, seq -> event)`` of a fan message."""
    return fan.decode_fan(payload, decode_event_at)


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
