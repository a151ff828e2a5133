"""The contract every :class:`~broker.store.base.EventStore` backend must pass.

A test module subclasses :class:`StoreContract` and provides a ``backend`` fixture returning a
:class:`Backend`; see ``tests/test_store_contract.py``. Tests that need durability (close and
re-open) are skipped for backends with ``durable=False``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from broker.errors import StoreFull
from broker.event import Event
from broker.store.base import DeadLetter, EventStore

LOG = "default/broker"
OTHER_LOG = "other/broker"


class MakeStore(Protocol):
    def __call__(
        self, place: Path, *, max_events: int | None = None, max_bytes: int | None = None
    ) -> EventStore: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """How to build a backend: ``make(place, **limits)`` returns an unopened store kept under
    ``place`` (a directory private to the test; the same ``place`` re-opens the same data)."""

    make: MakeStore
    durable: bool


OpenStore = Callable[..., Awaitable[EventStore]]


def event(n: int, data: bytes | None = b"x", **extra: str | int | bool) -> Event:
    attrs: dict[str, str | int | bool] = {"specversion": "1.0", "id": f"e{n}", "source": "/t", "type": "t"}
    attrs.update(extra)
    return Event(attrs, data)


async def eventually(check: Callable[[], Awaitable[bool]], deadline: float = 5.0) -> None:
    """Poll ``check`` until it is true; fail after ``deadline`` seconds (for lazy pruning)."""
    end = time.monotonic() + deadline
    while not await check():
        assert time.monotonic() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.01)


async def seqs_of(store: EventStore, subscription: str) -> list[int]:
    return [d.seq for d in await store.pending(subscription, 0, 1000)]


async def fill(store: EventStore, n: int, log: str = LOG) -> None:
    await store.append(log, [event(i) for i in range(1, n + 1)])


def dead(seq: int, reason: str = "HTTP 400 from http://svc/", subscription: str = "ns/a") -> DeadLetter:
    return DeadLetter(log=LOG, subscription=subscription, seq=seq, event=event(seq), reason=reason,
                      attempts=3, status=400, dead_at=1700000000.5)


class StoreContract:
    @pytest.fixture
    async def open_store(self, backend: Backend, tmp_path: Path) -> AsyncIterator[OpenStore]:
        opened: list[EventStore] = []

        async def make(max_events: int | None = None, max_bytes: int | None = None) -> EventStore:
            store = backend.make(tmp_path, max_events=max_events, max_bytes=max_bytes)
            await store.open()
            opened.append(store)
            return store

        yield make
        for store in opened:
            await store.close()

    @pytest.fixture
    async def store(self, open_store: OpenStore) -> EventStore:
        return await open_store()

    async def test_append_read_in_order_with_increasing_seq(self, store: EventStore) -> None:
        await store.append(LOG, [event(1), event(2)])
        await store.append(OTHER_LOG, [event(9)])
        await store.append(LOG, [event(3)])
        entries = await store.read(LOG, 0, 100)
        assert [e.event.id for e in entries] == ["e1", "e2", "e3"]
        seqs = [e.seq for e in entries]
        assert seqs[0] >= 1 and seqs == sorted(set(seqs))
        assert [e.seq for e in await store.read(LOG, seqs[0], 1)] == [seqs[1]]
        assert [e.event.id for e in await store.read(OTHER_LOG, 0, 100)] == ["e9"]
        assert await store.read("no/such", 0, 100) == []
        assert await store.cursor(LOG) == 0

    @pytest.mark.parametrize(
        "stored",
        [
            event(1, data=None),
            event(2, data=b""),
            event(3, data=bytes(range(256)) * 4),
            event(4, data="héllo ✓".encode(), count=7, flag=True, off=False, text="1", neg=-2**40),
            event(5, data=b"{}", datacontenttype="application/json", subject="", ünïcode="ä"),
        ],
        ids=["no-data", "empty-data", "binary", "typed-attributes", "unicode"],
    )
    async def test_event_round_trips_exactly(self, store: EventStore, stored: Event) -> None:
        await store.append(LOG, [stored])
        (entry,) = await store.read(LOG, 0, 10)
        assert entry.event.data == stored.data
        assert type(entry.event.data) is type(stored.data)
        assert dict(entry.event.attributes) == dict(stored.attributes)
        assert {k: type(v) for k, v in entry.event.attributes.items()} == {
            k: type(v) for k, v in stored.attributes.items()
        }
        await store.route(LOG, entry.seq, [(entry.seq, "ns/a")])
        (delivery,) = await store.pending("ns/a", 0, 10)
        assert delivery.event == entry.event

    @pytest.mark.parametrize("limit", ["max_events", "max_bytes"])
    async def test_append_is_all_or_nothing_at_the_limit(self, open_store: OpenStore, limit: str) -> None:
        store = await open_store(**{limit: 3 if limit == "max_events" else 250})
        await store.append(LOG, [event(1), event(2)])
        before = await store.stats()
        with pytest.raises(StoreFull) as info:
            await store.append(LOG, [event(3), event(4), event(5)])
        assert info.value.retriable and info.value.retry_after > 0
        assert await store.stats() == before
        assert [e.event.id for e in await store.read(LOG, 0, 100)] == ["e1", "e2"]

    async def test_full_store_has_room_again_after_finish(self, open_store: OpenStore) -> None:
        store = await open_store(max_events=2)
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a")])
        with pytest.raises(StoreFull):
            await store.append(LOG, [event(3)])
        await store.finish("ns/a", [s1])

        async def accepted() -> bool:
            try:
                await store.append(LOG, [event(3)])
            except StoreFull:
                return False
            return True

        await eventually(accepted)
        assert (await store.stats()).events == 2

    async def test_wait_returns_at_once_when_entries_exist(self, store: EventStore) -> None:
        await fill(store, 1)
        await asyncio.wait_for(store.wait(LOG, 0, timeout=30), 5)

    async def test_wait_wakes_on_append(self, store: EventStore) -> None:
        await fill(store, 1)
        (last,) = [e.seq for e in await store.read(LOG, 0, 10)]
        waiter = asyncio.create_task(store.wait(LOG, last, timeout=30))
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.append(LOG, [event(2)])
        started = time.monotonic()
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - started < 5

    async def test_wait_times_out_without_append_to_its_log(self, store: EventStore) -> None:
        started = time.monotonic()
        waiter = asyncio.create_task(store.wait(LOG, 0, timeout=0.2))
        await store.append(OTHER_LOG, [event(1)])
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - started >= 0.15
        assert await store.read(LOG, 0, 10) == []

    async def test_head_is_the_newest_seq(self, store: EventStore) -> None:
        assert await store.head(LOG) == 0
        await fill(store, 3)
        newest = [e.seq for e in await store.read(LOG, 0, 10)][-1]
        assert await store.head(LOG) == newest
        await store.route(LOG, newest, [])
        assert await store.head(LOG) == newest  # routing and pruning never move the head back

    async def test_route_records_pending_and_moves_cursor(self, store: EventStore) -> None:
        await fill(store, 3)
        s1, s2, s3 = [e.seq for e in await store.read(LOG, 0, 10)]
        pairs = [(s1, "ns/a"), (s1, "ns/b"), (s3, "ns/a")]
        await store.route(LOG, s3, pairs)
        assert await store.cursor(LOG) == s3
        assert await seqs_of(store, "ns/a") == [s1, s3]
        assert await seqs_of(store, "ns/b") == [s1]
        assert (await store.stats()).pending == 3
        # s2 had no subscription: routed past, so pruned.
        await eventually(lambda: _events_are(store, 2))

    async def test_route_is_idempotent(self, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        pairs = [(s1, "ns/a"), (s2, "ns/a"), (s2, "ns/b")]
        await store.route(LOG, s2, pairs)
        await store.route(LOG, s2, pairs)
        assert await seqs_of(store, "ns/a") == [s1, s2]
        assert (await store.stats()).pending == 3
        # Replaying a route after a delivery finished must not resurrect it.
        await store.finish("ns/a", [s1])
        await store.route(LOG, s2, pairs)
        assert await seqs_of(store, "ns/a") == [s2]
        assert await store.cursor(LOG) == s2

    @pytest.mark.parametrize("bad", ["beyond-upto", "beyond-log"])
    async def test_invalid_route_records_nothing(self, store: EventStore, bad: str) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        upto, pairs = (s1, [(s1, "ns/a"), (s2, "ns/a")]) if bad == "beyond-upto" else (s2 + 5, [(s1, "ns/a")])
        with pytest.raises(ValueError):
            await store.route(LOG, upto, pairs)
        assert await store.cursor(LOG) == 0
        assert await store.pending("ns/a", 0, 10) == []

    async def test_pending_honours_after_and_limit(self, store: EventStore) -> None:
        await fill(store, 5)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
        first = await store.pending("ns/a", 0, 2)
        assert [d.seq for d in first] == seqs[:2]
        assert [(d.log, d.subscription, d.event.id) for d in first] == [
            (LOG, "ns/a", "e1"),
            (LOG, "ns/a", "e2"),
        ]
        assert [d.seq for d in await store.pending("ns/a", seqs[1], 10)] == seqs[2:]
        assert await store.pending("ns/a", seqs[-1], 10) == []
        assert await store.pending("ns/other", 0, 10) == []

    async def test_finish_removes_and_prunes(self, store: EventStore) -> None:
        await fill(store, 3)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs] + [(seqs[0], "ns/b")])
        await store.finish("ns/a", [seqs[0], seqs[2], 10**9])
        assert await seqs_of(store, "ns/a") == [seqs[1]]
        assert await seqs_of(store, "ns/b") == [seqs[0]]
        # seqs[0] is still pending for ns/b; seqs[2] is pruned.
        await eventually(lambda: _events_are(store, 2))
        await store.finish("ns/b", [seqs[0]])
        await store.finish("ns/a", [seqs[1]])
        await eventually(lambda: _events_are(store, 0))
        stats = await store.stats()
        assert (stats.bytes, stats.pending) == (0, 0)

    async def test_dead_letter_keeps_record_and_finishes(self, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a")])
        first, second = dead(s2, reason="expired"), dead(s1)
        await store.dead_letter(first)
        await store.dead_letter(second)
        assert list(await store.dead_letters(LOG)) == [first, second]
        assert await store.dead_letters(OTHER_LOG) == []
        assert await store.pending("ns/a", 0, 10) == []
        stats = await store.stats()
        assert (stats.dead_letters, stats.pending) == (2, 0)

    async def test_dead_letter_without_a_delivery(self, store: EventStore) -> None:
        # A source's event that never reached the Broker has no seq: it is kept with seq 0.
        await fill(store, 1)
        (s1,) = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s1, [(s1, "ns/a")])
        record = dead(0, reason="sink never accepted it", subscription="PingSource:ns/tick")
        await store.dead_letter(record)
        assert list(await store.dead_letters(LOG)) == [record]
        assert [d.seq for d in await store.pending("ns/a", 0, 10)] == [s1]
        stats = await store.stats()
        assert (stats.dead_letters, stats.pending) == (1, 1)

    async def test_forget_drops_only_that_subscription(self, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a"), (s2, "ns/b")])
        await store.forget("ns/a")
        await store.forget("ns/never")
        assert await store.pending("ns/a", 0, 10) == []
        assert await seqs_of(store, "ns/b") == [s2]
        assert (await store.stats()).pending == 1
        await eventually(lambda: _events_are(store, 1))

    async def test_stats_count_stored_events(self, store: EventStore) -> None:
        assert await store.stats() == type(await store.stats())(events=0, bytes=0, pending=0, dead_letters=0)
        await store.append(LOG, [event(1, data=b"a" * 100), event(2, data=None)])
        stats = await store.stats()
        assert stats.events == 2 and stats.bytes > 100
        s2 = (await store.read(LOG, 0, 10))[-1].seq
        await store.route(LOG, s2, [])
        await eventually(lambda: _events_are(store, 0))
        assert (await store.stats()).bytes == 0
        await fill(store, 1)
        assert [e.seq for e in await store.read(LOG, 0, 10)][0] > s2

    async def test_reopen_resumes_pending_cursor_and_seq(self, backend: Backend, tmp_path: Path) -> None:
        if not backend.durable:
            pytest.skip("backend is not durable")
        store = backend.make(tmp_path)
        await store.open()
        await fill(store, 4)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[2], [(seqs[0], "ns/a"), (seqs[2], "ns/a")])
        await store.dead_letter(dead(seqs[0]))
        await store.close()
        await store.close()

        again = backend.make(tmp_path)
        await again.open()
        try:
            assert await again.cursor(LOG) == seqs[2]
            assert [(d.seq, d.event.id) for d in await again.pending("ns/a", 0, 10)] == [(seqs[2], "e3")]
            assert [e.seq for e in await again.read(LOG, seqs[2], 10)] == [seqs[3]]
            assert list(await again.dead_letters(LOG)) == [dead(seqs[0])]
            await again.append(LOG, [event(5)])
            assert (await again.read(LOG, seqs[3], 10))[0].seq > seqs[3]
            stats = await again.stats()
            assert (stats.events, stats.pending, stats.dead_letters) == (3, 1, 1)
        finally:
            await again.close()


async def _events_are(store: EventStore, n: int) -> bool:
    return (await store.stats()).events == n
