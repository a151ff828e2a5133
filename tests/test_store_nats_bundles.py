"""Delivery bundles of the NATS store: one message carries one route's deliveries of a
subscription, and a handle settles it only once each of them has an outcome."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import api

from broker.errors import StoreFull
from broker.event import Event
from broker.store.bundle import BUNDLE_BYTES, BUNDLE_EVENTS
from broker.store.nats import NatsStore
from broker.store.nats_route import split
from tests.store_contract import LOG, appends, claim_n, event, eventually, fill
from tests.test_store_nats import LEASE, make_store


def _big(n: int, size: int) -> Event:
    return event(n, data=b"x" * size)


@pytest.mark.parametrize(
    ("what", "pairs", "events", "ordered", "expected"),
    [
        ("one unordered subscription: bundles of its own", [(1, "a"), (2, "a"), (2, "o"), (3, "a")], {},
         ("o",), [("a", [1, 2, 3]), ("o", [2])]),
        ("repeated pairs once", [(2, "a"), (1, "a"), (2, "a")], {}, (), [("a", [1, 2])]),
        ("ordered: one per message", [(1, "o"), (2, "o"), (1, "a")], {}, ("o",),
         [("o", [1]), ("o", [2]), ("a", [1])]),
        ("two unordered subscriptions: fan messages, ordered ones apart", [(1, "a"), (1, "b"), (1, "o")],
         {}, ("o",), [("o", [1])]),
        ("cut at the event count", [(n, "a") for n in range(1, BUNDLE_EVENTS + 3)], {}, (),
         [("a", list(range(1, BUNDLE_EVENTS + 1))), ("a", [BUNDLE_EVENTS + 1, BUNDLE_EVENTS + 2])]),
        ("cut at the byte size", [(1, "a"), (2, "a"), (3, "a")],
         {1: _big(1, BUNDLE_BYTES // 2), 2: _big(2, BUNDLE_BYTES // 2), 3: _big(3, 10)}, (),
         [("a", [1]), ("a", [2, 3])]),
        ("an event larger than a bundle goes alone", [(1, "a"), (2, "a")],
         {1: _big(1, 2 * BUNDLE_BYTES), 2: _big(2, 10)}, (), [("a", [1]), ("a", [2])]),
    ],
)
def test_bundles_are_cut_by_count_size_and_order(
    what: str, pairs: list[tuple[int, str]], events: dict[int, Event], ordered: tuple[str, ...],
    expected: list[tuple[str, list[int]]],
) -> None:
    found = {seq: events.get(seq, event(seq)) for seq, _ in pairs}
    cut, _ = split(pairs, found, ordered)
    assert [(sub, [seq for seq, _ in bundle]) for sub, bundle in cut] == expected, what


async def _messages(store: NatsStore) -> int:
    session = store._session
    assert session is not None
    info: api.StreamInfo = await session.js.stream_info(store.config.names.deliveries_stream)
    return info.state.messages


async def _routed(store: NatsStore, count: int) -> list[int]:
    await fill(store, count)
    seqs = [e.seq for e in await store.read(LOG, 0, 100)]
    await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
    return seqs


async def test_one_route_is_one_message_and_its_fetcher_holds_all_of_it(
    nats_pair: tuple[NatsStore, NatsStore],
) -> None:
    a, b = nats_pair
    seqs = await _routed(a, 5)
    assert await _messages(a) == 1
    assert (await a.stats()).pending == 1  # pending counts messages
    first = await a.claim("ns/a", 2)
    assert [d.seq for d in first] == seqs[:2]
    assert await b.claim("ns/a", 10) == []  # the rest waits in a's handle, not on the server
    assert [d.seq for d in await claim_n(a, "ns/a", 3)] == seqs[2:]
    await a.finish("ns/a", seqs[:4])
    assert await _messages(a) == 1  # one delivery has no outcome yet: the message stays
    await a.finish("ns/a", seqs[4:])
    await eventually(lambda: _none(a))


async def _none(store: NatsStore) -> bool:
    return await _messages(store) == 0 and (await store.stats()).pending == 0


@pytest.mark.parametrize("finished", [0, 2], ids=["none-finished", "some-finished"])
async def test_released_deliveries_go_back_at_once_without_the_finished(
    nats_pair: tuple[NatsStore, NatsStore], finished: int
) -> None:
    a, b = nats_pair
    seqs = await _routed(a, 5)
    await claim_n(a, "ns/a", 5)
    await a.finish("ns/a", seqs[:finished])
    await a.release("ns/a", seqs[finished:4])  # seqs[4] is still held by a
    released = seqs[finished:4]
    assert [d.seq for d in await claim_n(b, "ns/a", len(released))] == released
    await b.finish("ns/a", released)
    await a.release("ns/a", seqs[4:])
    assert [d.seq for d in await claim_n(b, "ns/a", 1)] == seqs[4:]
    await b.finish("ns/a", seqs[4:])
    await eventually(lambda: _none(a))


@pytest.mark.parametrize("finished", [0, 3], ids=["none-finished", "some-finished"])
async def test_close_gives_back_what_has_no_outcome(
    nats_pair: tuple[NatsStore, NatsStore], finished: int
) -> None:
    a, b = nats_pair
    seqs = await _routed(a, 5)
    await a.claim("ns/a", 2)  # two handed out, three still queued in the handle
    await a.finish("ns/a", seqs[:finished])
    await a.close()
    assert [d.seq for d in await claim_n(b, "ns/a", 5 - finished)] == seqs[finished:]


async def test_ordered_deliveries_go_one_per_message(nats_pair: tuple[NatsStore, NatsStore]) -> None:
    a, _ = nats_pair
    await fill(a, 3)
    seqs = [e.seq for e in await a.read(LOG, 0, 10)]
    await a.route(LOG, seqs[-1], [(s, "ns/o") for s in seqs], ordered={"ns/o"})
    assert await _messages(a) == 3


async def test_a_dead_holder_s_message_comes_back_whole(nats_pair: tuple[NatsStore, NatsStore]) -> None:
    # At least once: the deliveries it finished come again with those it had not.
    a, b = nats_pair
    seqs = await _routed(a, 5)
    await claim_n(a, "ns/a", 5)
    await a.finish("ns/a", seqs[:2])
    await a.abandon()
    assert [d.seq for d in await claim_n(b, "ns/a", 5, deadline=10 * LEASE)] == seqs


async def test_a_release_the_full_stream_refused_is_not_lost(nats_url: str, tmp_path: Path) -> None:
    # The deliveries stream holds at most two messages: publishing a released delivery again
    # is refused. The message carrying it must then come back (after the lease), never be
    # acked with that delivery inside.
    store = make_store(nats_url, tmp_path, max_events=2)
    await store.open()
    try:
        first = await _routed(store, 2)  # one message to ns/a
        await eventually(appends(store, [event(3)], StoreFull))  # once the routed two are pruned
        (third,) = [e.seq for e in await store.read(LOG, first[-1], 10)]
        await store.route(LOG, third, [(third, "ns/b")])  # the second message: the stream is full
        assert [d.seq for d in await claim_n(store, "ns/a", 2)] == first
        await store.release("ns/a", first[:1])  # refused; best effort, so no error
        with pytest.raises(StoreFull):
            await store.finish("ns/a", first[1:])  # the refused one is tried again, refused again
        await claim_n(store, "ns/b", 1)
        await store.finish("ns/b", [third])  # room again
        got: list[int] = []

        async def back() -> bool:
            got.extend(d.seq for d in await store.claim("ns/a", 10))
            return first[0] in got

        await eventually(back, deadline=10 * LEASE)
    finally:
        await store.close()
