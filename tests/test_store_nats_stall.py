"""The NATS store against a server that stalls (SIGSTOP) and then catches up.

A stalled server, or a client loop too busy to read its socket, makes requests time out while
their answers are still on the way. Those answers must neither wedge the connection nor strand
deliveries until their claim lease runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from broker.errors import StoreUnavailable
from broker.store.nats import NatsStore
from broker.store.nats_config import NatsConfig
from broker.store.nats_pull import PULLS_AT_ONCE, Pulls
from tests.nats_server import NatsServer, own_server  # noqa: F401  (the ``server`` fixture)
from tests.store_contract import LOG, appends, event, eventually, fill, prefix_for

LONG_LEASE = 60.0
"""Longer than any deadline below: a delivery stranded until its lease ends fails the test."""
TIMEOUT = 1.0


@pytest.fixture
async def store(server: NatsServer, tmp_path: Path) -> AsyncIterator[NatsStore]:
    opened = NatsStore(NatsConfig(servers=(server.url,), prefix=prefix_for(tmp_path),
                                  claim_lease=LONG_LEASE, timeout=TIMEOUT))
    await opened.open()
    yield opened
    await opened.close()


async def routed(store: NatsStore, n: int, subscription: str) -> list[int]:
    await fill(store, n)
    seqs = [e.seq for e in await store.read(LOG, 0, 10)]
    await store.route(LOG, seqs[-1], [(s, subscription) for s in seqs])
    return seqs


async def test_a_flush_that_timed_out_leaves_the_connection_working(
    server: NatsServer, store: NatsStore
) -> None:
    seqs = await routed(store, 2, "ns/a")
    held = [d.seq for d in await store.claim("ns/a", 10)]
    assert held == seqs
    server.pause()
    try:
        with pytest.raises(StoreUnavailable):
            await store.finish("ns/a", held)
    finally:
        server.resume()

    # nats-py's own flush left a cancelled future for the late PONG, and its read loop died on it.
    await eventually(appends(store, [event(3)], StoreUnavailable), deadline=10)
    assert [e.event.id for e in await store.read(LOG, seqs[-1], 10)] == ["e3"]


async def test_deliveries_answered_after_their_claim_gave_up_are_claimable_at_once(
    server: NatsServer, store: NatsStore
) -> None:
    seqs = await routed(store, 3, "ns/a")
    assert [d.seq for d in await store.claim("ns/a", 1)] == seqs[:1]
    server.pause()
    try:
        with pytest.raises(StoreUnavailable):
            await store.claim("ns/a", 10)
    finally:
        server.resume()
    got: list[int] = []

    async def claimed_the_rest() -> bool:
        try:
            got.extend(d.seq for d in await store.claim("ns/a", 10))
        except StoreUnavailable:
            pass
        return sorted(got) == seqs[1:]

    # The server sent the two to the abandoned pull's inbox once it woke up; they come back
    # by nak, not after the 60 s lease.
    await eventually(claimed_the_rest, deadline=10)


async def test_a_connection_keeps_at_most_pulls_at_once_open() -> None:
    # Workers beyond the gate wait before sending, so the open ones are answered in time.
    release = asyncio.Event()

    class Counting(Pulls):
        open = most = 0

        async def _pull(self, stream: str, consumer: str, batch: int, *, timeout: float,
                        expires: float | None, max_bytes: int | None) -> list[Msg]:
            self.open += 1
            self.most = max(self.most, self.open)
            await release.wait()
            self.open -= 1
            return []

    pulls = Counting(cast(Client, None))
    waiting = [asyncio.create_task(pulls.pull("S", "c", 1, timeout=1.0)) for _ in range(3 * PULLS_AT_ONCE)]

    async def gated() -> bool:
        return pulls.open == PULLS_AT_ONCE

    await eventually(gated)
    release.set()
    assert await asyncio.gather(*waiting) == [[]] * (3 * PULLS_AT_ONCE)
    assert pulls.most == PULLS_AT_ONCE
