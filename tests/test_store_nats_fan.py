"""Fan messages of the NATS store: one message carries a route's deliveries to many
subscriptions; the handle that fetches it queues them under each subscription, and the
message is settled only once each delivery in it has an outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js import api

from broker.event import Event
from broker.store import nats_claims
from broker.store.fan import FAN_DELIVERIES, FAN_HEADER_BYTES, fan_messages
from broker.store.nats import NatsStore
from broker.store.nats_codec import encode_event
from broker.store.nats_due import FAN_EVERY, OWN_EVERY, Due
from broker.store.nats_fan import decode_fan, encode_fan
from tests.store_contract import LOG, claim_n, event, eventually, fill
from tests.test_store_nats import LEASE

SUBS = ["ns/a", "ns/b", "ns/c"]


def _body(seq: int) -> bytes:
    return encode_event(event(seq))


@pytest.mark.parametrize(
    ("what", "per_sub", "expected"),
    [
        ("all match: one group", {"ns/a": [1, 2], "ns/b": [1, 2]}, [[([1, 2], ["ns/a", "ns/b"])]]),
        ("different seqs: a group each", {"ns/b": [2], "ns/a": [1, 2], "ns/c": [2]},
         [[([1, 2], ["ns/a"]), ([2], ["ns/b", "ns/c"])]]),
        ("repeated seqs once", {"ns/a": [2, 1, 2], "ns/b": [1]}, [[([1, 2], ["ns/a"]), ([1], ["ns/b"])]]),
        ("cut so no message holds more than FAN_DELIVERIES",
         {f"ns/s{i:04}": [1, 2, 3] for i in range(FAN_DELIVERIES // 2)},
         [[([1, 2], [f"ns/s{i:04}" for i in range(FAN_DELIVERIES // 2)])],
          [([3], [f"ns/s{i:04}" for i in range(FAN_DELIVERIES // 2)])]]),
    ],
)
def test_fan_messages_group_subscriptions_by_their_seqs(
    what: str, per_sub: dict[str, list[int]], expected: list[list[tuple[list[int], list[str]]]]
) -> None:
    found = fan_messages(per_sub, _body)
    assert [groups for groups, _ in found] == expected, what
    for groups, events in found:  # each message carries each of its events once
        assert [seq for seq, _ in events] == sorted({s for seqs, _ in groups for s in seqs})
    assert fan_messages(per_sub, _body) == found, "the same route cuts the same messages"


def test_fan_messages_split_subscriptions_by_header_bytes() -> None:
    long = "ns/" + "x" * 200
    subs = {f"{long}{i:05}": [1] for i in range(2 * FAN_HEADER_BYTES // 200)}
    found = fan_messages(subs, _body)
    assert len(found) > 1
    assert sorted(sub for groups, _ in found for _, names in groups for sub in names) == sorted(subs)
    for groups, _ in found:
        assert sum(len(sub) + 4 for _, names in groups for sub in names) <= FAN_HEADER_BYTES


def test_a_fan_message_decodes_to_what_was_encoded() -> None:
    attrs: dict[str, str | int | bool] = {"specversion": "1.0", "id": "x", "source": "/s", "type": "t"}
    attrs["n"] = 3  # a value that is not a string keeps its type
    events = {1: event(1), 2: Event(attrs, None)}
    (groups, bodies), = fan_messages({"ns/a": [1, 2], "ns/b": [2]},
                                     lambda seq: encode_event(events[seq]))
    payload, msg_id = encode_fan(LOG, groups, bodies)
    assert decode_fan(payload) == (LOG, {"ns/a": [1, 2], "ns/b": [2]}, events)
    assert encode_fan(LOG, groups, bodies)[1] == msg_id
    assert encode_fan(LOG, groups[:1], bodies)[1] != msg_id


@pytest.mark.parametrize(
    ("what", "steps", "due"),
    [
        ("never fetched", [], True),
        ("fetched, nothing more", [("pulled", False)], False),
        ("fetched full", [("pulled", True)], True),
        ("news after the fetch", [("pulled", False), ("news",)], True),
        ("news during the fetch", [("news during",)], True),
        ("long after the fetch", [("pulled", False), ("later",)], True),
    ],
)
def test_a_consumer_is_due_only_while_messages_may_wait(what: str, steps: list[tuple[object, ...]],
                                                       due: bool) -> None:
    own, fan = Due(), Due()
    now = 100.0
    for step in steps:
        if step[0] == "pulled":
            own.pulled("ns/a", now, more=bool(step[1]), started=own.start("ns/a"))
            fan.fan_pulled(now, more=bool(step[1]), started=fan.fan_start())
        elif step[0] == "news":
            own.news(["ns/a"], False)
            fan.news([], True)
        elif step[0] == "news during":
            started, fan_started = own.start("ns/a"), fan.fan_start()
            own.news(["ns/a"], False)
            fan.news([], True)
            own.pulled("ns/a", now, more=False, started=started)
            fan.fan_pulled(now, more=False, started=fan_started)
        else:
            now += max(OWN_EVERY, FAN_EVERY)
    assert own.own("ns/a", now) is due, what
    assert fan.fan(now) is due, what


async def _messages(store: NatsStore) -> int:
    session = store._session
    assert session is not None
    info: api.StreamInfo = await session.js.stream_info(store.config.names.deliveries_stream)
    return info.state.messages


async def _routed(store: NatsStore, count: int, subs: Collection[str] = SUBS) -> list[int]:
    await fill(store, count)
    seqs = [e.seq for e in await store.read(LOG, 0, 100)]
    await store.route(LOG, seqs[-1], [(s, sub) for s in seqs for sub in subs])
    return seqs


async def test_a_route_to_many_is_one_message_held_by_its_fetcher(
    nats_pair: tuple[NatsStore, NatsStore],
) -> None:
    a, b = nats_pair
    told: list[set[str]] = []
    b.watch(lambda subs: told.append(set(subs)))
    seqs = await _routed(a, 2)
    assert await _messages(a) == 1
    assert [d.seq for d in await claim_n(b, "ns/a", 2)] == seqs
    assert {"ns/b", "ns/c"} <= set().union(*told)  # b's workers of the others are woken
    for sub in ("ns/b", "ns/c"):
        assert await a.claim(sub, 10) == []  # queued in b's handle, not on the server
        assert [d.seq for d in await b.claim(sub, 10)] == seqs
    await b.finish("ns/a", seqs)
    await b.finish("ns/b", seqs)
    assert await _messages(a) == 1  # ns/c's have no outcome yet: the message stays
    await b.finish("ns/c", seqs)
    await eventually(lambda: _none(a))


async def _none(store: NatsStore) -> bool:
    return await _messages(store) == 0 and (await store.stats()).pending == 0


async def test_a_released_delivery_goes_back_alone_on_its_own_subject(
    nats_pair: tuple[NatsStore, NatsStore],
) -> None:
    a, b = nats_pair
    seqs = await _routed(a, 2)
    for sub in SUBS:
        await claim_n(a, sub, 2)
    await a.finish("ns/a", seqs)
    await a.release("ns/b", seqs[:1])
    assert [d.seq for d in await claim_n(b, "ns/b", 1)] == seqs[:1]  # at once, not after the lease
    for sub in ("ns/a", "ns/c"):
        assert await b.claim(sub, 10) == []
    await b.finish("ns/b", seqs[:1])
    await a.finish("ns/b", seqs[1:])
    await a.finish("ns/c", seqs)
    await eventually(lambda: _none(a))


async def test_all_released_the_message_comes_back_whole(nats_pair: tuple[NatsStore, NatsStore]) -> None:
    a, b = nats_pair
    seqs = await _routed(a, 2)
    for sub in SUBS:
        await claim_n(a, sub, 2)
    await a.close()  # nothing finished: the message is nak'ed, claimable again at once
    for sub in SUBS:
        assert [d.seq for d in await claim_n(b, sub, 2)] == seqs
    assert await _messages(b) == 1


async def test_a_dead_holder_s_fan_message_comes_back_whole(nats_pair: tuple[NatsStore, NatsStore]) -> None:
    # At least once: the deliveries it finished come again with those it had not.
    a, b = nats_pair
    seqs = await _routed(a, 2)
    await claim_n(a, "ns/a", 2)
    await a.finish("ns/a", seqs)
    await a.abandon()
    for sub in SUBS:
        assert [d.seq for d in await claim_n(b, sub, 2, deadline=10 * LEASE)] == seqs


async def test_deliveries_nobody_claims_here_are_moved_out(
    nats_pair: tuple[NatsStore, NatsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Trigger this process does not run must not keep the message (and the others'
    # progress in it) waiting: its deliveries move to its own subject, where others claim them.
    monkeypatch.setattr(nats_claims, "MOVE_AFTER", 0.3)
    monkeypatch.setattr(nats_claims, "TICK", 0.05)
    a, b = nats_pair
    seqs = await _routed(a, 2)
    for sub in ("ns/a", "ns/b"):
        await claim_n(b, sub, 2)
        await b.finish(sub, seqs)
    assert [d.seq for d in await claim_n(a, "ns/c", 2, deadline=10.0)] == seqs  # long before the lease
    await a.finish("ns/c", seqs)
    await eventually(lambda: _none(a))


async def test_a_full_queue_moves_the_rest_out(
    nats_pair: tuple[NatsStore, NatsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_claims, "QUEUED_MOST", 1)
    a, b = nats_pair
    seqs = await _routed(a, 3)
    assert [d.seq for d in await a.claim("ns/a", 1)] == seqs[:1]
    # ns/b and ns/c queued one each in a; their other two went to their own subjects.
    for sub in ("ns/b", "ns/c"):
        assert sorted(d.seq for d in await claim_n(b, sub, 2)) == seqs[1:]
        assert [d.seq for d in await claim_n(a, sub, 1)] == seqs[:1]
    assert [d.seq for d in await claim_n(a, "ns/a", 2)] == seqs[1:]
    for store, sub, done in [(a, "ns/a", seqs), (a, "ns/b", seqs[:1]), (a, "ns/c", seqs[:1]),
                             (b, "ns/b", seqs[1:]), (b, "ns/c", seqs[1:])]:
        await store.finish(sub, done)
    await eventually(lambda: _none(a))


async def test_forget_drops_fan_deliveries_routed_before_it_only(
    nats_pair: tuple[NatsStore, NatsStore],
) -> None:
    a, _ = nats_pair
    first = await _routed(a, 1)
    await a.forget("ns/b")
    await fill(a, 1)
    later = [e.seq for e in await a.read(LOG, first[-1], 10)]
    await a.route(LOG, later[-1], [(s, sub) for s in later for sub in SUBS])  # ns/b exists again
    assert [d.seq for d in await claim_n(a, "ns/b", 1)] == later
    assert [d.seq for d in await claim_n(a, "ns/a", 2)] == first + later


async def test_an_ordered_subscription_s_fan_deliveries_go_to_its_own_consumer(
    nats_pair: tuple[NatsStore, NatsStore],
) -> None:
    # A router that still took ns/b for unordered put it in a fan message; this handle claims
    # it as ordered, so its deliveries move to its own subject and come one at a time.
    a, _ = nats_pair
    assert await a.claim("ns/b", 10, ordered=True) == []
    seqs = await _routed(a, 2)
    await claim_n(a, "ns/a", 2)
    got: list[int] = []

    async def one() -> bool:
        got.extend(d.seq for d in await a.claim("ns/b", 10, ordered=True))
        return bool(got)

    for seq in seqs:
        got.clear()
        await eventually(one)
        assert got == [seq]
        await a.finish("ns/b", got)


async def test_claims_after_a_route_make_one_fetch_not_one_each(
    nats_pair: tuple[NatsStore, NatsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fifty workers woken by one route: the first claim fetches the fan message, the others
    # wait for that fetch, and none asks its own consumer (nothing of its own is waiting).
    a, b = nats_pair
    subs = [f"ns/s{i}" for i in range(50)]
    session = b._session
    assert session is not None
    pulled: list[str] = []
    pull = session.claim_pulls.pull

    async def counted(stream: str, consumer: str, batch: int, **options: Any) -> list[Msg]:
        pulled.append(consumer)
        return await pull(stream, consumer, batch, **options)

    monkeypatch.setattr(session.claim_pulls, "pull", counted)
    for round_ in range(2):
        await fill(a, 1)
        (seq,) = [e.seq for e in await a.read(LOG, await a.cursor(LOG), 10)]
        await a.route(LOG, seq, [(seq, sub) for sub in subs])
        pulled.clear()

        async def one(sub: str) -> list[int]:
            got = [d.seq for d in await b.claim(sub, 10)]
            while not got:
                await asyncio.sleep(0.01)
                got = [d.seq for d in await b.claim(sub, 10)]
            await b.finish(sub, got)
            return got

        assert await asyncio.wait_for(asyncio.gather(*(one(sub) for sub in subs)), 10) == [[seq]] * 50
        if round_ == 0:
            assert pulled.count("fan") <= 2  # each subscription also looked at its own consumer once
        else:
            assert pulled.count("fan") <= 2 and len(pulled) == pulled.count("fan"), pulled
