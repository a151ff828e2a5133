"""The SQLite store's in-memory caches (``broker/store/sqlite_hot.py``) never change an answer.

A seeded random mix of appends, routes, claims, releases, finishes and forgets runs against the
SQLite store with tiny cache limits (so subscriptions keep turning hot and cold) and against the
memory store as the model; every claim must return the same deliveries and the counts must agree.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from broker.store.claims import Claims
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore
from broker.store.sqlite_hot import HotSet
from tests.store_contract import event

LOG = "default/broker"
SUBS = ["ns/a", "ns/b", "ns/c"]


@pytest.mark.parametrize(
    ("seed", "max_queue", "max_bytes"),
    [(1, 3, 1 << 20), (2, 2, 1 << 20), (3, 64, 1 << 20), (4, 4, 2000), (5, 1000, 1 << 20)],
)
async def test_caches_answer_as_the_database_would(
    tmp_path: Path, seed: int, max_queue: int, max_bytes: int
) -> None:
    rng = random.Random(seed)
    model = MemoryStore()
    store = SqliteStore(path=tmp_path / "weir.db", hot=HotSet(max_bytes=max_bytes, max_queue=max_queue))
    await model.open()
    await store.open()
    held: dict[str, set[int]] = {name: set() for name in SUBS}
    cursor = 0
    n = 0
    try:
        for step in range(1500):
            op = rng.choices(["append", "route", "claim", "release", "finish", "forget"],
                             weights=[6, 5, 8, 3, 5, 0.2])[0]
            if op == "append":
                batch = [event(n + i, data=b"x" * rng.choice([0, 10, 900])) for i in range(rng.randint(1, 3))]
                n += len(batch)
                for s in (model, store):
                    await s.append(LOG, batch)
            elif op == "route":
                entries = await store.read(LOG, cursor, rng.randint(1, 4))
                modelled = await model.read(LOG, cursor, len(entries))
                assert [e.seq for e in entries] == [e.seq for e in modelled]
                if not entries:
                    continue
                pairs = [(e.seq, name) for e in entries for name in SUBS if rng.random() < 0.6]
                cursor = entries[-1].seq
                for s in (model, store):
                    await s.route(LOG, cursor, pairs)
            elif op == "claim":
                name, limit = rng.choice(SUBS), rng.randint(1, 4)
                expected = [(d.seq, d.event.id) for d in await model.claim(name, limit)]
                got = [(d.seq, d.event.id) for d in await store.claim(name, limit)]
                assert got == expected, f"step {step}: claim({name}, {limit})"
                held[name].update(seq for seq, _ in got)
            elif op in ("release", "finish"):
                name = rng.choice(SUBS)
                chosen = sorted(s for s in held[name] if rng.random() < 0.5)
                held[name].difference_update(chosen)
                for s in (model, store):
                    await (s.release if op == "release" else s.finish)(name, chosen)
            else:
                name = rng.choice(SUBS)
                held[name].clear()
                for s in (model, store):
                    await s.forget(name)
            want, got_stats = await model.stats(), await store.stats()
            assert (got_stats.pending, got_stats.events) == (want.pending, want.events), step
    finally:
        await store.close()
        await model.close()


async def test_a_route_during_a_database_claim_is_not_lost(tmp_path: Path) -> None:
    """The claim's query ran before the route committed: the queue it would warm is incomplete."""
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    try:
        await store.append(LOG, [event(1), event(2)])
        await store.route(LOG, 1, [(1, "ns/a")])
        reader = store._reader
        assert reader is not None
        query = reader.run

        async def query_then_route(fn):  # type: ignore[no-untyped-def]
            rows = await query(fn)
            await store.route(LOG, 2, [(2, "ns/a")])  # commits after the snapshot was taken
            return rows

        reader.run = query_then_route  # type: ignore[method-assign]
        assert [d.seq for d in await store.claim("ns/a", 10)] == [1]
        reader.run = query  # type: ignore[method-assign]
        assert [d.seq for d in await store.claim("ns/a", 10)] == [2]
    finally:
        await store.close()


@pytest.mark.parametrize("commit", ["after-query", "after-claim"])
async def test_a_claim_racing_a_route_commit_does_not_warm_an_incomplete_queue(
    tmp_path: Path, commit: str
) -> None:
    """The route is submitted (its deliveries announced) but commits only after the claim's
    query ran, or after the whole claim: the claim found nothing, yet the subscription must not
    turn hot with an empty queue, or the routed delivery would never be claimed."""
    store = SqliteStore(path=tmp_path / "weir.db")
    await store.open()
    try:
        await store.append(LOG, [event(1)])
        writer, reader = store._writer, store._reader
        assert writer is not None and reader is not None
        write, query = writer.write, reader.run
        gate = asyncio.Event()

        async def gated_write(*args, **kwargs):  # type: ignore[no-untyped-def]
            await gate.wait()
            await write(*args, **kwargs)

        async def query_then_commit(fn):  # type: ignore[no-untyped-def]
            rows = await query(fn)
            if commit == "after-query":
                gate.set()
                await routing
            return rows

        writer.write = gated_write  # type: ignore[method-assign]
        reader.run = query_then_commit  # type: ignore[method-assign]
        routing = asyncio.create_task(store.route(LOG, 1, [(1, "ns/a")]))
        await asyncio.sleep(0)  # the route is announced; its write waits for the gate
        assert await store.claim("ns/a", 10) == []
        gate.set()
        await routing
        reader.run = query  # type: ignore[method-assign]
        assert [d.seq for d in await store.claim("ns/a", 10)] == [1]
    finally:
        await store.close()


def test_claims_keep_nothing_for_a_subscription_whose_claims_found_nothing() -> None:
    # 10,000 Triggers that never match would otherwise each keep an empty record.
    claims = Claims()
    assert claims.take("ns/idle", [], 10) == []
    assert claims.scan("ns/idle", 10) == (0, 10)
    assert not claims._subs
