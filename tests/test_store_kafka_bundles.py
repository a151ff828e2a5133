"""Delivery bundles of the Kafka store: one record carries one route's deliveries of a
subscription sharing a key, and its offset is committed only once each of them is finished."""

from __future__ import annotations

import asyncio

import pytest

from broker.store.kafka import KafkaStore
from broker.store.kafka_codec import decode_bundle, delivery_records
from broker.store.kafka_offsets import Offsets, PartitionState
from tests.store_contract import LOG, claim_n, event, eventually
from tests.test_store_kafka import MakeHandles, _owned, fill_keyless, handles  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    ("what", "ordered", "keys", "expected"),
    [
        ("keyless, unordered: one record", (), {}, [("a", None, [1, 2, 3])]),
        ("one record per key", (), {1: "x", 3: "x", 2: "y"}, [("a", b"x", [1, 3]), ("a", b"y", [2])]),
        ("ordered: one per record", ("a",), {}, [("a", b"", [1]), ("a", b"", [2]), ("a", b"", [3])]),
    ],
)
def test_delivery_records_group_by_key(
    what: str, ordered: tuple[str, ...], keys: dict[int, str],
    expected: list[tuple[str, bytes | None, list[int]]],
) -> None:
    events = {n: event(n, partitionkey=keys[n]) if n in keys else event(n) for n in (1, 2, 3)}
    records = delivery_records(LOG, [(3, "a"), (1, "a"), (2, "a")], events, set(ordered))
    found = [(name, key, [d.seq for d in decode_bundle(name, value)]) for name, key, value in records]
    assert found == expected, what
    assert all(d.event == events[d.seq] for _, _, value in records for d in decode_bundle("a", value))


@pytest.mark.parametrize(
    ("steps", "base", "pinned"),
    [
        # (operation, offset, n): a record of three deliveries at offset 0; "one" finishes the n-th.
        ([("one", 0, 1), ("one", 0, 2)], 0, True),
        ([("one", 0, 1), ("one", 0, 2), ("one", 0, 3)], 1, True),  # committable, not yet committed
        ([("one", 0, 2), ("again", 0, 0)], 0, True),
    ],
    ids=["partly-finished", "all-finished", "re-fetched"],
)
def test_a_record_is_finished_once_each_delivery_is(
    steps: list[tuple[str, int, int]], base: int, pinned: bool
) -> None:
    part = PartitionState.starting_at("ns/a", 0)
    assert part.arrive(0)
    keys = [("ns/a", 1), ("ns/a", 2), ("ns/b", 1)]  # a record of one subscription, or a fan record
    assert part.fresh(0, keys) == set(keys)
    for op, offset, at in steps:
        if op == "one":
            part.finish_one(offset, keys[at - 1])
        else:  # the partition came back: the record is fetched again, its finished key is not new
            part.revoke()
            assert part.arrive(offset)
            assert part.fresh(offset, keys) == {keys[0], keys[2]}
    assert (part.base, part.pinned) == (base, pinned)


async def _pending(store: KafkaStore, n: int) -> bool:
    return (await store.stats()).pending == n


async def test_the_offset_is_committed_once_every_delivery_of_its_record_is_finished(
    handles: MakeHandles,  # noqa: F811
) -> None:
    (a,) = await handles(1)
    seqs = await fill_keyless(a, 5)
    await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
    await eventually(lambda: _pending(a, 1), deadline=10)  # one record
    assert [d.seq for d in await claim_n(a, "ns/a", 5)] == seqs
    await a.finish("ns/a", seqs[:2])
    await a.release("ns/a", seqs[2:4])
    assert [d.seq for d in await claim_n(a, "ns/a", 2)] == seqs[2:4]  # released ones wait here again
    await a.finish("ns/a", seqs[2:4])
    assert await _pending(a, 1)  # seqs[4] is not finished: the record stays
    await a.finish("ns/a", seqs[4:])
    await eventually(lambda: _pending(a, 0), deadline=10)


async def _half_finished(handles: MakeHandles) -> tuple[KafkaStore, KafkaStore, list[int]]:  # noqa: F811
    """Two handles; ``a`` holds one record of four deliveries and has finished the first two."""
    a, b = await handles(2)
    seqs = await fill_keyless(a, 4)
    await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
    await claim_n(a, "ns/a", 4)
    await a.finish("ns/a", seqs[:2])
    return a, b, seqs


async def test_a_crashed_handles_partly_finished_record_comes_back_whole(
    handles: MakeHandles,  # noqa: F811
) -> None:
    # At least once: the deliveries it finished come again with those it had not.
    a, b, seqs = await _half_finished(handles)
    await b.claim("ns/a", 10)  # joins the group
    await a.abandon()
    assert [d.seq for d in await claim_n(b, "ns/a", 4, deadline=30)] == seqs


async def test_a_clean_close_hands_back_only_the_unfinished_rest_of_a_record(
    handles: MakeHandles,  # noqa: F811
) -> None:
    a, b, seqs = await _half_finished(handles)
    await a.release("ns/a", seqs[2:3])  # one released, one still held at close
    await b.claim("ns/a", 10)  # joins the group and gets the partitions a does not hold

    async def joined() -> bool:
        return bool(_owned(b))

    await eventually(joined, deadline=30)
    await a.close()
    assert [d.seq for d in await claim_n(b, "ns/a", 2, deadline=30)] == seqs[2:]


async def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    # A thousand workers finishing together: one commit runs, and everyone who arrived meanwhile
    # waits for one more (which covers their offsets), not for a commit each.
    offsets = Offsets(timeout=1.0)
    started = 0

    async def commit_due(member: object) -> None:
        nonlocal started
        started += 1
        await asyncio.sleep(0.01)

    offsets._commit_due = commit_due  # type: ignore[method-assign]
    await asyncio.gather(*(offsets.commit(None) for _ in range(1000)))
    assert started == 2
