"""Fan records on the Kafka store: one record carries a route's deliveries to many
subscriptions; the handle owning its partition buffers them under each subscription, and the
offset is committed only once each of them is finished."""

from __future__ import annotations

from collections.abc import Collection

import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from broker.store import kafka_claims, kafka_intake
from broker.store.base import Delivery
from broker.store.kafka import KafkaStore
from broker.store.kafka_assign import StickyAssignor
from broker.store.kafka_codec import decode_fan, fan_record, fan_records
from tests.store_contract import LOG, claim_n, event, eventually
from tests.test_store_kafka import MakeHandles, _owned, fill_keyless, handles  # noqa: F401  (fixture)

SUBS = ["ns/a", "ns/b", "ns/c"]


def test_fan_records_decode_to_what_was_routed() -> None:
    events = {1: event(1), 2: event(2, partitionkey="k")}
    (value,) = fan_records(LOG, {"ns/a": [1, 2], "ns/b": [2]}, events)
    assert decode_fan(value) == (LOG, {"ns/a": [1, 2], "ns/b": [2]}, events)
    rest = [Delivery(log=LOG, subscription="ns/b", seq=2, event=events[2]),
            Delivery(log=LOG, subscription="ns/a", seq=2, event=events[2])]
    assert decode_fan(fan_record(LOG, rest)) == (LOG, {"ns/a": [2], "ns/b": [2]}, {2: events[2]})


async def _pending(store: KafkaStore, n: int) -> bool:
    return (await store.stats()).pending == n


async def _routed(store: KafkaStore, count: int, subs: Collection[str] = SUBS) -> list[int]:
    seqs = await fill_keyless(store, count)
    await store.route(LOG, seqs[-1], [(s, sub) for s in seqs for sub in subs])
    return seqs


@pytest.fixture
def quick_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_intake, "MOVE_AFTER", 0.3)
    monkeypatch.setattr(kafka_claims, "MOVE_EVERY", 0.1)


async def test_a_route_to_many_is_one_record_committed_once_all_are_finished(
    handles: MakeHandles,  # noqa: F811
) -> None:
    (a,) = await handles(1)
    seqs = await _routed(a, 2)
    await eventually(lambda: _pending(a, 1), deadline=10)  # one fan record
    for sub in SUBS:
        assert [d.seq for d in await claim_n(a, sub, 2, deadline=30)] == seqs
    await a.finish("ns/a", seqs)
    await a.finish("ns/b", seqs)
    await a.release("ns/c", seqs[:1])
    assert [d.seq for d in await claim_n(a, "ns/c", 1)] == seqs[:1]  # released: waits here again
    await a.finish("ns/c", seqs[:1])
    assert await _pending(a, 1)  # one delivery of the record is not finished
    await a.finish("ns/c", seqs[1:])
    await eventually(lambda: _pending(a, 0), deadline=10)


@pytest.mark.usefixtures("quick_moves")
async def test_deliveries_nobody_claims_on_their_handle_move_to_their_own_topic(
    handles: MakeHandles,  # noqa: F811
) -> None:
    # a claims ns/a and ns/b, b claims ns/c: whichever owns the record's partition buffers all
    # three, and the deliveries it does not claim move to their subscriptions' topics, which
    # only the other follows.
    a, b = await handles(2)
    await a.claim("ns/a", 10)
    await a.claim("ns/b", 10)
    await b.claim("ns/c", 10)

    async def joined() -> bool:
        return bool(_owned(a)) and bool(_owned(b))

    await eventually(joined, deadline=30)
    seqs = await _routed(a, 2)
    for store, sub in [(a, "ns/a"), (a, "ns/b"), (b, "ns/c")]:
        assert [d.seq for d in await claim_n(store, sub, 2, deadline=30)] == seqs
        await store.finish(sub, seqs)
    await eventually(lambda: _pending(a, 0), deadline=20)


async def test_a_full_buffer_moves_the_rest_out(handles: MakeHandles) -> None:  # noqa: F811
    (a,) = await handles(1, buffer=2)
    await a.claim("ns/a", 10)
    seqs = await _routed(a, 5, SUBS[:2])
    # Each subscription's first two wait in its buffer; the other three were produced to its
    # own topic: the fan record and one record per subscription are pending.
    await eventually(lambda: _pending(a, 3), deadline=20)
    for sub in SUBS[:2]:
        got = await claim_n(a, sub, 5, deadline=30)
        assert [d.seq for d in got] == seqs
        await a.finish(sub, seqs)
    await eventually(lambda: _pending(a, 0), deadline=20)


async def test_a_crashed_handles_fan_record_comes_back_whole(handles: MakeHandles) -> None:  # noqa: F811
    # At least once: the deliveries it finished come again with those it had not.
    a, b = await handles(2)
    seqs = await _routed(a, 2)
    for sub in SUBS:
        await claim_n(a, sub, 2, deadline=30)
    await a.finish("ns/a", seqs)
    for sub in SUBS:
        await b.claim(sub, 10)  # joins the group
    await a.abandon()
    for sub in SUBS:
        assert [d.seq for d in await claim_n(b, sub, 2, deadline=30)] == seqs


async def test_a_clean_close_hands_back_only_the_unfinished_rest_of_a_fan_record(
    handles: MakeHandles,  # noqa: F811
) -> None:
    a, b = await handles(2)
    seqs = await _routed(a, 2)
    for sub in SUBS:
        await claim_n(a, sub, 2, deadline=30)
    await a.finish("ns/a", seqs)
    await a.finish("ns/b", seqs[:1])
    for sub in SUBS:
        await b.claim(sub, 10)

    async def joined() -> bool:
        return bool(_owned(b))

    await eventually(joined, deadline=30)
    await a.close()
    assert [d.seq for d in await claim_n(b, "ns/b", 1, deadline=30)] == seqs[1:]
    assert [d.seq for d in await claim_n(b, "ns/c", 2, deadline=30)] == seqs
    assert await b.claim("ns/a", 10) == []


class _Cluster:
    """The one thing the assignor asks of cluster metadata: each topic's partitions."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self._partitions[topic]))


@pytest.mark.parametrize(
    ("what", "pinned", "expected"),
    [
        ("nothing pinned: each topic split", {},
         {"m1": {"t.a": 2, "t.fan": 2}, "m2": {"t.a": 2, "t.fan": 2}}),
        # Balancing the total instead would give m2 three of t.fan and m1 one.
        ("pins kept, each topic's rest split", {"m1": [("t.a", 0), ("t.a", 1), ("t.a", 2)]},
         {"m1": {"t.a": 3, "t.fan": 2}, "m2": {"t.a": 1, "t.fan": 2}}),
    ],
)
def test_the_assignor_spreads_each_topic_over_the_members(
    what: str, pinned: dict[str, list[tuple[str, int]]], expected: dict[str, dict[str, int]]
) -> None:
    members = {
        m: ConsumerProtocolMemberMetadata(0, ["t.a", "t.fan"],
                                          orjson.dumps({"pinned": pinned.get(m, []), "owned": []}))
        for m in ("m1", "m2")
    }
    cluster = _Cluster({"t.a": 4, "t.fan": 4})
    assignment = StickyAssignor(lambda: ((), ())).assign(cluster, members)
    found = {m: {topic: len(parts) for topic, parts in a.assignment} for m, a in assignment.items()}
    assert found == expected, what
