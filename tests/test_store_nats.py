"""The NATS JetStream store: the store contract, plus what only a server that can go away shows.

Every test gets its own name prefix (derived from its ``tmp_path``), so tests share one
session server without meeting each other's streams. Failure tests run their own server
(:class:`~tests.nats_server.NatsServer`) so stopping it disturbs nobody else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from broker.errors import EventTooLarge, StoreFull, StoreUnavailable
from broker.store.base import Delivery, EventStore
from broker.store.factory import open_store
from broker.store.nats import NatsStore, nats_store_from_url
from broker.store.nats_codec import (
    SCALE,
    decode_batch,
    encode_batch,
    entries,
    first_message_after,
    message_of,
)
from broker.store.nats_config import NatsConfig
from broker.store.nats_names import Names, name_id, name_tokens
from tests.nats_server import NatsServer, own_server  # noqa: F401  (the ``server`` fixture)
from tests.store_contract import (
    LOG,
    Backend,
    SharedStoreContract,
    StoreContract,
    appends,
    claim_n,
    event,
    eventually,
    fanned_messages,
    fill,
    prefix_for,
)

LEASE = 2.0
"""Claim lease and routing lease TTL in these tests (seconds)."""



def make_store(
    url: str, place: Path, *, max_events: int | None = None, max_bytes: int | None = None
) -> NatsStore:
    config = NatsConfig(servers=(url,), prefix=prefix_for(place), claim_lease=LEASE, lease_ttl=LEASE,
                        max_events=max_events, max_bytes=max_bytes)
    return NatsStore(config)


async def abandon(store: EventStore) -> None:
    await cast(NatsStore, store).abandon()


@pytest.fixture
def backend(nats_url: str) -> Backend:
    def make(place: Path, *, max_events: int | None = None, max_bytes: int | None = None) -> EventStore:
        return make_store(nats_url, place, max_events=max_events, max_bytes=max_bytes)

    return Backend(make=make, durable=True, shared=True, copies_on_route=True, abandon=abandon,
                   messages=fanned_messages)


class TestNatsStoreContract(StoreContract, SharedStoreContract):
    pass


# --- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ident", "tokens"),
    [
        ("default/broker", "default_broker", "default.broker"),
        ("ns-1/my-trigger", "ns-1_my-trigger", "ns-1.my-trigger"),
        ("PingSource:ns/tick", "_kbuw4z2tn52xey3fhjxhgl3unfrww", "_.kbuw4z2tn52xey3fhjxhgl3unfrww"),
        ("ns/a.b", "_nzzs6yjomi", "_.nzzs6yjomi"),
    ],
)
def test_names_map_to_safe_unambiguous_tokens(name: str, ident: str, tokens: str) -> None:
    assert name_id(name) == ident
    assert name_tokens(name) == tokens


def test_names_derive_from_the_prefix() -> None:
    names = Names("weir")
    assert names.log_stream("ns/b") == "WEIR_LOG_ns_b"
    assert names.log_subject("ns/b", 3) == "weir.log.ns.b.3"
    assert names.delivery_subject("ns/t") == "weir.dl.ns.t"
    with pytest.raises(ValueError):
        Names("we.ir")


@pytest.mark.parametrize("count", [1, 2, 7])
def test_entry_seqs_map_to_messages(count: int) -> None:
    events = [event(i) for i in range(count)]
    found = entries(5, events)
    assert [e.seq for e in found][-1] == 5 * SCALE
    assert all(message_of(e.seq) == 5 for e in found)
    assert first_message_after(found[-1].seq) == 6 and first_message_after(found[0].seq - 1) == 5
    assert decode_batch(encode_batch(events)) == events


def test_an_append_of_more_than_scale_events_is_refused() -> None:
    with pytest.raises(EventTooLarge):
        encode_batch([event(1)] * (SCALE + 1))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://127.0.0.1:4333", {"servers": ("nats://127.0.0.1:4333",), "prefix": "weir"}),
        ("nats://a:1,b:2?prefix=x&replicas=3&claim_lease=5&lease_ttl=4&duplicate_window=60&timeout=1.5",
         {"servers": ("nats://a:1", "nats://b:2"), "prefix": "x", "replicas": 3, "claim_lease": 5.0,
          "lease_ttl": 4.0, "duplicate_window": 60.0, "timeout": 1.5}),
    ],
)
def test_url_parameters(url: str, expected: dict[str, object]) -> None:
    config = nats_store_from_url(url, max_events=9).config
    assert config.max_events == 9
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    "url", ["nats://", "nats://h:1?color=red", "nats://h:1?replicas=0", "nats://h:1/path", "nats://u:p@h:1",
            "nats://h:1?prefix=a.b", "nats://h:1?claim_lease=-1"],
)
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url, data_dir="/nonexistent")


async def test_the_server_refuses_appends_beyond_a_streams_own_limit(nats_url: str, tmp_path: Path) -> None:
    limited = make_store(nats_url, tmp_path, max_events=2)
    unlimited = make_store(nats_url, tmp_path)  # checks nothing itself: the stream's limit holds
    await limited.open()
    await unlimited.open()
    try:
        await fill(limited, 1)  # creates the log's stream, limited to 2 messages
        await fill(unlimited, 1)
        with pytest.raises(StoreFull) as info:
            await fill(unlimited, 1)
        assert info.value.retriable and info.value.retry_after > 0
        assert len(await unlimited.read(LOG, 0, 10)) == 2
    finally:
        await limited.close()
        await unlimited.close()


# --- a server that goes away ----------------------------------------------------------------


@pytest.fixture
async def handles(server: NatsServer, tmp_path: Path) -> AsyncIterator[list[NatsStore]]:
    opened: list[NatsStore] = []
    yield opened
    for store in opened:
        await store.close()


async def opened(handles: list[NatsStore], server: NatsServer, place: Path) -> NatsStore:
    store = make_store(server.url, place)
    await store.open()
    handles.append(store)
    return store


async def test_append_fails_fast_while_the_server_is_down_and_resumes_after(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    store = await opened(handles, server, tmp_path)
    await fill(store, 2)
    server.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await store.append(LOG, [event(3)])
    assert info.value.retriable and info.value.retry_after > 0
    assert time.monotonic() - started < 3
    server.start()

    await eventually(appends(store, [event(3)], StoreUnavailable), deadline=15)
    assert [e.event.id for e in await store.read(LOG, 0, 10)] == ["e1", "e2", "e3"]


async def test_claims_move_on_when_the_holders_connection_dies(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    holder = await opened(handles, server, tmp_path)
    other = await opened(handles, server, tmp_path)
    await fill(holder, 3)
    seqs = [e.seq for e in await holder.read(LOG, 0, 10)]
    await holder.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
    assert [d.seq for d in await claim_n(holder, "ns/a", 3)] == seqs
    assert await other.claim("ns/a", 10) == []
    # Past several lease periods the holder keeps its claims: it renews them.
    end = time.monotonic() + 2.5 * LEASE
    while time.monotonic() < end:
        assert await _claim_or_retry(other) == []
    await holder.abandon()
    got: list[int] = []
    end = time.monotonic() + 10 * LEASE
    while len(got) < 3:
        got += [d.seq for d in await _claim_or_retry(other)]
        assert time.monotonic() < end
    assert sorted(got) == seqs


async def _claim_or_retry(store: NatsStore) -> list[Delivery]:
    """A claim, or nothing when it gave up for want of an answer in time (the loaded machine
    of a full suite run): retriable, as a worker treats it."""
    try:
        return list(await store.claim("ns/a", 10))
    except StoreUnavailable as exc:
        assert exc.retriable
        await asyncio.sleep(exc.retry_after)
        return []


async def test_a_route_replayed_after_a_crash_creates_no_duplicate(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    crashed = await opened(handles, server, tmp_path)
    await fill(crashed, 2)
    s1, s2 = [e.seq for e in await crashed.read(LOG, 0, 10)]
    # The deliveries are recorded but the router dies before it moves the cursor (the route's
    # first half, reached through private names: no public call stops halfway). ns/b is
    # ordered so that its delivery has a message of its own: finishing it settles that message
    # (one finished in a fan message would come back with the rest of it after the crash).
    session = crashed._session
    assert session is not None
    await session.router._publish(LOG, [(s1, "ns/a"), (s2, "ns/a"), (s2, "ns/b")],
                                  {s1: event(1), s2: event(2)}, {"ns/b"})
    # One of them is even delivered before the next router replays the route.
    (first,) = await claim_n(crashed, "ns/b", 1)
    await crashed.finish("ns/b", [first.seq])
    await crashed.abandon()

    router = await opened(handles, server, tmp_path)
    assert await router.cursor(LOG) == 0
    found = await router.read(LOG, 0, 10)
    await router.route(LOG, found[-1].seq, [(e.seq, "ns/a") for e in found] + [(s2, "ns/b")],
                       ordered={"ns/b"})
    assert await router.cursor(LOG) == s2
    assert [(d.seq, d.event.id) for d in await claim_n(router, "ns/a", 2)] == [(s1, "e1"), (s2, "e2")]
    assert await router.claim("ns/b", 10) == []
    assert (await router.stats()).pending == 1  # the replayed bundle was dropped as a duplicate


async def test_ordered_claims_hand_out_one_delivery_at_a_time(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    a = await opened(handles, server, tmp_path)
    b = await opened(handles, server, tmp_path)
    await fill(a, 3)
    seqs = [e.seq for e in await a.read(LOG, 0, 10)]
    await a.route(LOG, seqs[-1], [(s, "ns/o") for s in seqs], ordered={"ns/o"})
    for seq in seqs:
        got = await _claim_ordered(a, b)
        assert [d.seq for d in got[0] + got[1]] == [seq]
        assert await a.claim("ns/o", 10, ordered=True) == [] and await b.claim("ns/o", 10, ordered=True) == []
        holder = a if got[0] else b
        await holder.finish("ns/o", [seq])
    # Back to unordered: several at once.
    await fill(a, 2)
    more = [e.seq for e in await a.read(LOG, seqs[-1], 10)]
    await a.route(LOG, more[-1], [(s, "ns/o") for s in more])
    assert [d.seq for d in await claim_n(a, "ns/o", 2)] == more


async def _claim_ordered(a: NatsStore, b: NatsStore) -> tuple[list[Delivery], list[Delivery]]:
    end = time.monotonic() + 10
    while True:
        got = (list(await a.claim("ns/o", 10, ordered=True)), list(await b.claim("ns/o", 10, ordered=True)))
        if got[0] or got[1]:
            return got
        assert time.monotonic() < end


async def test_the_lease_moves_when_its_holder_dies(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    first = await opened(handles, server, tmp_path)
    assert await first.lease(LOG)
    second = await opened(handles, server, tmp_path)
    end = time.monotonic() + 2.5 * LEASE
    while time.monotonic() < end:  # renewed in the background: the holder keeps it
        assert await first.lease(LOG) and not await second.lease(LOG)
        await asyncio.sleep(0.05)
    await first.abandon()
    started = time.monotonic()
    await eventually(lambda: second.lease(LOG), deadline=10 * LEASE)
    assert time.monotonic() - started < 3 * LEASE


async def test_pending_deliveries_survive_a_server_restart(
    server: NatsServer, handles: list[NatsStore], tmp_path: Path
) -> None:
    store = await opened(handles, server, tmp_path)
    await fill(store, 3)
    seqs = [e.seq for e in await store.read(LOG, 0, 10)]
    await store.route(LOG, seqs[1], [(seqs[0], "ns/a"), (seqs[1], "ns/a")])
    server.restart()

    async def routed() -> bool:
        try:
            found = await store.read(LOG, seqs[1], 10)
            await store.route(LOG, found[-1].seq, [(found[-1].seq, "ns/a")])
        except StoreUnavailable:
            return False
        return True

    await eventually(routed, deadline=15)
    assert [d.seq for d in await claim_n(store, "ns/a", 3)] == seqs
