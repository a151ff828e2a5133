"""The Kafka store (``kafka://``) against the store contract, plus what only Kafka does.

Runs against the session's tansu broker (``tests/kafka_server.py``) or ``KAFKA_BOOTSTRAP_SERVERS``.
Every test gets its own topic prefix (derived from its tmp dir), so tests never see each
other's topics or groups. Group sessions are short (1 s) so joins and hand-overs are quick.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from broker.errors import StoreUnavailable
from broker.store import kafka_idle
from broker.store.base import EventStore
from broker.store.kafka import KafkaStore, kafka_store_from_url
from broker.store.kafka_config import KafkaStoreConfig, Names, kafka_config_from_url
from broker.store.kafka_idle import IdlePartitions
from tests.kafka_server import private_tansu
from tests.store_contract import (
    LOG,
    Backend,
    SharedStoreContract,
    StoreContract,
    _claim_some,
    _lease_holder,
    claim_n,
    event,
    eventually,
    fanned_messages,
    prefix_for,
)

SESSION = 1.0
"""Seconds of both groups' sessions in tests: the shortest the store accepts (tansu then takes
about a second per join, two when a member joins a group that has one)."""



def url_of(bootstrap: str, place: Path, **options: object) -> str:
    settings = {"prefix": prefix_for(place), "lease_ttl": SESSION, "claim_lease": SESSION, **options}
    return f"kafka://{bootstrap}?" + "&".join(f"{k}={v}" for k, v in settings.items())


async def abandon(store: EventStore) -> None:
    await cast(KafkaStore, store).abandon()


@pytest.fixture
def backend(kafka_bootstrap: str) -> Backend:
    def make(place: Path, *, max_events: int | None = None, max_bytes: int | None = None) -> EventStore:
        url = url_of(kafka_bootstrap, place)
        return kafka_store_from_url(url, max_events=max_events, max_bytes=max_bytes)

    return Backend(make=make, durable=True, shared=True, copies_on_route=True, abandon=abandon,
                   messages=fanned_messages)


def keys_by_partition(partitions: int) -> list[str]:
    """One ``partitionkey`` per delivery partition, in partition order (the producer's default
    partitioner: murmur2 of the key)."""
    choose = DefaultPartitioner()
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        key = f"k{n}"
        found.setdefault(choose(key.encode(), list(range(partitions)), list(range(partitions))), key)
        n += 1
    return [found[p] for p in range(partitions)]


class TestKafkaStoreContract(StoreContract, SharedStoreContract):
    async def test_claims_are_exclusive_across_handles(self, pair: list[EventStore]) -> None:
        """Kafka's version of the contract's test: a group hands out partitions, not single
        deliveries, so a handle can claim only deliveries in partitions no live handle holds a
        claim in. Here each delivery has its own partition."""
        a, b = pair
        await a.append(LOG, [event(i, partitionkey=key) for i, key in enumerate(keys_by_partition(4), 1)])
        seqs = [e.seq for e in await a.read(LOG, 0, 10)]
        await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
        held_a = await _claim_some(a, "ns/a", 2)
        held_b = await _claim_some(b, "ns/a", 2)
        assert sorted(held_a + held_b) == seqs
        assert await a.claim("ns/a", 10) == [] and await b.claim("ns/a", 10) == []
        await a.release("ns/a", held_a)
        assert await b.claim("ns/a", 10) == []  # still a's partitions
        assert sorted(await _claim_some(a, "ns/a", 2)) == sorted(held_a)
        await a.close()  # leaves the group: the partitions and the unfinished claims move
        assert sorted(await _claim_some(b, "ns/a", 2)) == sorted(held_a)


MakeHandles = Callable[..., Awaitable[list[KafkaStore]]]


@pytest.fixture
async def handles(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[MakeHandles]:
    """``await handles(n, **options)``: ``n`` open handles on one test-private prefix."""
    opened: list[KafkaStore] = []

    async def make(n: int, **options: object) -> list[KafkaStore]:
        made = [kafka_store_from_url(url_of(kafka_bootstrap, tmp_path, **options)) for _ in range(n)]
        for store in made:
            await store.open()
        opened.extend(made)
        return made

    yield make
    for store in opened:
        await store.close()


async def fill_keyless(store: EventStore, n: int) -> list[int]:
    await store.append(LOG, [event(i) for i in range(1, n + 1)])
    return [e.seq for e in await store.read(LOG, 0, n)]


LONG = 60.0
"""A ``commit_interval`` no test outlasts: nothing is committed before the handle closes."""


@pytest.mark.parametrize(("interval", "finished_again"), [(0, False), (LONG, True)],
                         ids=["committed at finish", "crash within the commit interval"])
async def test_a_crashed_handles_unfinished_claims_move_and_committed_ones_do_not(
    handles: MakeHandles, interval: float, finished_again: bool
) -> None:
    a, b = await handles(2, commit_interval=interval)
    seqs = await fill_keyless(a, 3)
    await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs], ordered=["ns/a"])
    assert sorted(await _claim_some(a, "ns/a", 3)) == seqs
    await a.finish("ns/a", seqs[:1])
    await b.claim("ns/a", 10)  # joins the group
    await a.abandon()  # no commit of anything more, no leave: b waits out a's session
    expected = seqs if finished_again else seqs[1:]
    assert [d.seq for d in await claim_n(b, "ns/a", len(expected), deadline=30)] == expected


async def test_ordered_deliveries_stay_with_the_handle_holding_an_earlier_one(
    handles: MakeHandles,
) -> None:
    a, b = await handles(2)
    seqs = await fill_keyless(a, 6)
    ordered, spread = seqs[:3], seqs[3:]
    await a.route(LOG, seqs[-1], [(s, "ns/o") for s in ordered] + [(s, "ns/u") for s in spread],
                  ordered=["ns/o"])
    assert await _claim_some(a, "ns/o", 1) == ordered[:1]
    await b.claim("ns/o", 10)
    # Nobody claims ns/u on a: once b holds all of it, b has joined with both topics.
    assert sorted(await _claim_some(b, "ns/u", 3)) == spread
    assert await b.claim("ns/o", 10) == []  # a holds an earlier delivery of their partition
    await a.finish("ns/o", ordered[:1])
    await a.close()
    later = await _claim_some(b, "ns/o", 2, deadline=30)
    assert later == ordered[1:]  # in order


async def test_a_stuck_subscription_does_not_stop_another(handles: MakeHandles) -> None:
    (store,) = await handles(1, buffer=2)
    seqs = await fill_keyless(store, 23)
    stuck, free = seqs[:20], seqs[20:]
    await store.route(LOG, seqs[-1], [(s, "ns/stuck") for s in stuck] + [(s, "ns/free") for s in free])
    await _claim_some(store, "ns/stuck", 1)  # never finished
    assert [d.seq for d in await claim_n(store, "ns/free", 3)] == free
    session = store._session
    assert session is not None and session.claims._subs["ns/stuck"].paused  # fetching it stopped


def _idle(store: KafkaStore) -> IdlePartitions:
    session = store._session
    assert session is not None
    return session.claims._reader.idle


def _fetched(store: KafkaStore) -> set[TopicPartition]:
    session = store._session
    assert session is not None
    consumer = session.claims._reader._consumer
    assert consumer is not None
    return set(consumer.assignment())


def _owned(store: KafkaStore) -> set[TopicPartition]:
    session = store._session
    assert session is not None
    return set(session.claims._owned)


def _idle_of(store: KafkaStore, subscription: str) -> int:
    """Idle partitions of ``subscription``'s topic (the fan records' topic idles too)."""
    topic = store._names.delivery(subscription)
    return sum(1 for tp in _idle(store).partitions if tp.topic == topic)


def _paused(store: KafkaStore, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _idle_of(store, "ns/i") == count
    return check


@pytest.fixture
def quick_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_idle, "IDLE_AFTER", 0.2)
    monkeypatch.setattr(kafka_idle, "IDLE_CHECK", 0.1)


@pytest.mark.usefixtures("quick_idle")
async def test_idle_partitions_pause_and_another_handles_route_resumes_them(handles: MakeHandles) -> None:
    a, b = await handles(2)
    await b.claim("ns/i", 10)  # only b joins the dispatcher group
    await eventually(_paused(b, 4), deadline=20)  # all four partitions of ns/i
    assert _fetched(b) == set()  # the fetching consumer no longer names them
    seqs = await fill_keyless(a, 2)
    await a.route(LOG, seqs[-1], [(s, "ns/i") for s in seqs])  # a owns none of them: no wake
    assert sorted(await _claim_some(b, "ns/i", 2, deadline=20)) == seqs
    assert _idle_of(b, "ns/i") < 4
    assert _fetched(b) == {tp for tp in _owned(b) if tp not in _idle(b).partitions}


@pytest.mark.usefixtures("quick_idle")
async def test_a_handles_own_route_resumes_the_partition_it_wrote_at_once(handles: MakeHandles) -> None:
    (store,) = await handles(1)
    await store.claim("ns/i", 10)
    await eventually(_paused(store, 4), deadline=20)
    _idle(store)._next = math.inf  # no periodic check from now on: only the route may resume
    seqs = await fill_keyless(store, 1)
    await store.route(LOG, seqs[-1], [(seqs[0], "ns/i")])
    assert _idle_of(store, "ns/i") == 3
    assert [d.seq for d in await claim_n(store, "ns/i", 1)] == seqs


@pytest.mark.parametrize(("interval", "crash", "routed_again"), [
    (0, False, False),
    (LONG, False, False),  # a clean close commits what the interval had not yet
    (0, True, False),
    (LONG, True, True),  # a crash within the interval: the next holder routes those again
], ids=["close, committed at route", "close within the interval", "crash, committed at route",
        "crash within the interval"])
async def test_the_cursor_moves_with_the_lease(
    handles: MakeHandles, interval: float, crash: bool, routed_again: bool
) -> None:
    pair = await handles(2, commit_interval=interval)
    holder, other = await _lease_holder(list(pair))
    seqs = await fill_keyless(holder, 4)
    await holder.route(LOG, seqs[1], [(s, "ns/a") for s in seqs[:2]])
    if crash:
        await cast(KafkaStore, holder).abandon()
    else:
        await holder.close()
    deadline = time.monotonic() + 30
    while not await other.lease(LOG):
        assert time.monotonic() < deadline, "the lease did not move"
        await asyncio.sleep(0.05)
    if routed_again:
        assert await other.cursor(LOG) == 0
        await other.route(LOG, seqs[1], [(s, "ns/a") for s in seqs[:2]])
        # Both routes' records hold the two (at least once: a copy may be skipped or claimed).
        got: set[int] = set()
        while got != set(seqs[:2]):
            assert time.monotonic() < deadline, f"claimed {sorted(got)} of {seqs[:2]}"
            got.update(d.seq for d in await other.claim("ns/a", 10))
            await asyncio.sleep(0.02)
        return
    assert await other.cursor(LOG) == seqs[1]
    rest = await other.read(LOG, seqs[1], 10)
    assert [e.seq for e in rest] == seqs[2:]
    await other.route(LOG, seqs[-1], [(e.seq, "ns/a") for e in rest])
    assert [d.seq for d in await claim_n(other, "ns/a", 4)] == seqs  # each once


async def test_unavailable_while_kafka_is_down_and_fine_once_it_is_back(tmp_path: Path) -> None:
    with private_tansu() as address:
        store = kafka_store_from_url(url_of(address, tmp_path, timeout=1))
        await store.open()
        await store.append(LOG, [event(1)])
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            await store.append(LOG, [event(2)])
        assert info.value.retriable and time.monotonic() - started < 5
        with private_tansu(int(address.rpartition(":")[2])):
            deadline = time.monotonic() + 20
            while True:
                try:
                    await store.append(LOG, [event(3)])
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "appends did not recover"
                    await asyncio.sleep(0.1)
            assert [e.event.id for e in await store.read(LOG, 0, 10)][-1] == "e3"
    finally:
        await store.close()


async def test_close_finishes_while_kafka_is_down(tmp_path: Path) -> None:
    with private_tansu() as address:
        store = kafka_store_from_url(url_of(address, tmp_path, timeout=1))
        await store.open()
        await store.append(LOG, [event(1)])
        await store.read(LOG, 0, 10)
        await store.lease(LOG)
        await store.claim("ns/a", 10)
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 10


async def test_open_fails_fast_without_kafka(tmp_path: Path) -> None:
    with private_tansu() as address:
        pass  # a port nothing listens on any more
    store = kafka_store_from_url(url_of(address, tmp_path, timeout=1))
    with pytest.raises(StoreUnavailable):
        await store.open()
    await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://k:9092", KafkaStoreConfig(bootstrap=("k:9092",))),
        ("kafka://a:1,b:2/?prefix=mesh.prod&partitions=8&replicas=3",
         KafkaStoreConfig(bootstrap=("a:1", "b:2"), prefix="mesh.prod", partitions=8, replicas=3)),
        ("kafka://k:1?lease_ttl=10&claim_lease=1.5&timeout=0.5&buffer=50",
         KafkaStoreConfig(bootstrap=("k:1",), lease_ttl=10.0, claim_lease=1.5, timeout=0.5,
                          buffer=50)),
    ],
)
def test_url_options(url: str, expected: KafkaStoreConfig) -> None:
    assert kafka_config_from_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["kafka://", "kafka://host", "kafka://h:x", "kafka://h:1/path", "kafka://h:1?color=red",
     "kafka://h:1?prefix=a/b", "kafka://h:1?partitions=0", "kafka://h:1?buffer=many",
     "kafka://h:1?claim_lease=0.5", "nats://h:1"],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(ValueError):
        kafka_config_from_url(url)


@pytest.mark.parametrize(
    ("kind", "name", "topic"),
    [
        ("log", "default/broker", "weir.log.default.broker"),
        ("log", "ns/Big_b.x", "weir.log.ns._42ig_5fb_2ex"),
        ("delivery", "ns/trigger-1", "weir.dl.ns.trigger-1"),
        ("delivery", "ns/ä", "weir.dl.ns._c3_a4"),
    ],
)
def test_topic_names(kind: str, name: str, topic: str) -> None:
    names = Names("weir")
    assert (names.log(name) if kind == "log" else names.delivery(name)) == topic


def test_long_names_stay_distinct_and_within_kafkas_limit() -> None:
    names = Names("weir")
    first, second = names.log("ns/" + "a" * 300), names.log("ns/" + "a" * 299 + "b")
    assert first != second and len(first) <= 249 and len(second) <= 249


async def test_routing_its_own_appends_asks_kafka_for_no_log_end(handles: MakeHandles) -> None:
    # A ListOffsets per read and per route made 1.5 requests per event at 250 events/s, more
    # than the produce, fetch and commit of a bare relay together cost the server.
    (a,) = await handles(1)
    (cursor,) = await fill_keyless(a, 1)
    prober = await a._open().reader._started_prober()
    asked: list[object] = []
    ask = prober.end_offsets

    async def counted(partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        asked.append(partitions)
        return cast(dict[TopicPartition, int], await ask(partitions))

    prober.end_offsets = counted
    for i in range(2, 7):
        await a.append(LOG, [event(i)])
        entries = await a.read(LOG, cursor, 10)
        assert [e.event.id for e in entries] == [f"e{i}"]
        await a.route(LOG, entries[-1].seq, [(e.seq, "ns/a") for e in entries])
        cursor = entries[-1].seq
    assert asked == []
    assert len(await claim_n(a, "ns/a", 5)) == 5


async def test_a_dead_handles_claims_are_told_to_the_next_owners_watch(handles: MakeHandles) -> None:
    # Why the dispatcher need not poll hibernating workers on Kafka (factory.needs_polling):
    # the next owner's fetch loop reads the partition and tells of what it holds.
    a, b = await handles(2)
    told: set[str] = set()
    b.watch(told.update)
    seqs = await fill_keyless(a, 3)
    await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs], ordered=["ns/a"])  # one partition
    assert sorted(await _claim_some(a, "ns/a", 3)) == seqs
    await b.claim("ns/a", 10)  # subscribed once, then never asks again
    told.clear()
    await a.abandon()

    async def heard() -> bool:
        return "ns/a" in told

    await eventually(heard, deadline=30)
    assert [d.seq for d in await claim_n(b, "ns/a", 3)] == seqs
