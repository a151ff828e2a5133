"""The contract every :class:`~broker.store.base.EventStore` backend must pass.

A test module subclasses :class:`StoreContract` and provides a ``backend`` fixture returning a
:class:`Backend`; see ``tests/test_store_contract.py``. Tests that need durability (close and
re-open) are skipped for backends with ``durable=False``; tests of several handles on the same
data (claims, leases, watch) run only for ``shared=True`` backends.

Shared backends learn of deliveries asynchronously, so claims are polled with a deadline
(:func:`claim_n`); a count that a backend updates lazily is polled with :func:`eventually`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from broker.errors import StoreError, StoreFull
from broker.event import Event
from broker.store.base import DeadLetter, Delivery, EventStore
from broker.store.fan import FAN_MIN

LOG = "default/broker"
OTHER_LOG = "other/broker"



def prefix_for(place: Path, letter: str = "t") -> str:
    """A stream/topic prefix of its own for each test (shared servers outlive the tests)."""
    return letter + hashlib.sha256(str(place).encode()).hexdigest()[:12]

class MakeStore(Protocol):
    def __call__(
        self, place: Path, *, max_events: int | None = None, max_bytes: int | None = None
    ) -> EventStore: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """How to build a backend: ``make(place, **limits)`` returns an unopened store kept under
    ``place`` (a directory private to the test; the same ``place`` reaches the same data)."""

    make: MakeStore
    durable: bool
    shared: bool = False
    """Several handles made with the same ``place`` may be open at once and share the data."""
    copies_on_route: bool = False
    """Each pending delivery carries its own copy of the event, so a log entry is pruned once the
    cursor passed it: ``stats().events`` then counts log entries not yet routed."""
    abandon: Callable[[EventStore], Awaitable[None]] | None = None
    """Stop a handle as a crash would: no release, no clean leave (shared backends)."""
    messages: Callable[[list[tuple[int, str]]], int] | None = None
    """How many messages one route of these pairs writes, where deliveries share messages and
    ``stats().pending`` counts messages; ``None``: it counts deliveries."""

    @property
    def bundles(self) -> bool:
        return self.messages is not None

    def pending(self, pairs: list[tuple[int, str]]) -> int:
        """What ``stats().pending`` says after one route of ``pairs``."""
        return len(set(pairs)) if self.messages is None else self.messages(pairs)


def fanned_messages(pairs: list[tuple[int, str]]) -> int:
    """Messages (records) one route of unordered subscriptions and few events writes on a store
    with fan records (:mod:`broker.store.fan`): a bundle of its own for a lone subscription, else
    one fan record."""
    subs = {sub for _, sub in pairs}
    return len(subs) if len(subs) < FAN_MIN else 1


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


def appends(
    store: EventStore, events: list[Event], refused: type[StoreError]
) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: whether appending ``events`` to :data:`LOG` succeeds now
    (``refused`` means not yet; any other error fails the test)."""

    async def check() -> bool:
        try:
            await store.append(LOG, events)
        except refused:
            return False
        return True

    return check


async def claim_n(store: EventStore, subscription: str, n: int, deadline: float = 10.0) -> list[Delivery]:
    """Claim until ``n`` deliveries are held (ascending ``seq``); fail after ``deadline`` seconds.
    Then check that nothing more is claimable right now (``n`` must be all there are)."""
    got: list[Delivery] = []
    end = time.monotonic() + deadline
    while len(got) < n:
        got.extend(await store.claim(subscription, n - len(got)))
        if len(got) < n:
            assert time.monotonic() < end, f"claimed {len(got)} of {n} deliveries of {subscription}"
            await asyncio.sleep(0.01)
    assert await store.claim(subscription, 1000) == []
    return sorted(got, key=lambda d: d.seq)


async def seqs_of(store: EventStore, subscription: str, n: int) -> list[int]:
    """The ``n`` pending seqs of ``subscription``, claimed and released again."""
    found = [d.seq for d in await claim_n(store, subscription, n)]
    await store.release(subscription, found)
    return found


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
        (delivery,) = await claim_n(store, "ns/a", 1)
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

    async def test_full_store_has_room_again_once_events_leave(
        self, backend: Backend, open_store: OpenStore
    ) -> None:
        store = await open_store(max_events=2)
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        if backend.copies_on_route:
            # Unrouted entries fill the log; routing moves them into their deliveries.
            with pytest.raises(StoreFull):
                await store.append(LOG, [event(3)])
            await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a")])
        else:
            await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a")])
            with pytest.raises(StoreFull):
                await store.append(LOG, [event(3)])
            await claim_n(store, "ns/a", 2)
            await store.finish("ns/a", [s1])

        await eventually(appends(store, [event(3)], StoreFull))
        await eventually(lambda: _events_are(store, 1 if backend.copies_on_route else 2))

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

    async def test_route_records_pending_and_moves_cursor(self, backend: Backend, store: EventStore) -> None:
        await fill(store, 3)
        s1, s2, s3 = [e.seq for e in await store.read(LOG, 0, 10)]
        pairs = [(s1, "ns/a"), (s1, "ns/b"), (s3, "ns/a")]
        await store.route(LOG, s3, pairs)
        assert await store.cursor(LOG) == s3
        assert (await store.stats()).pending == backend.pending(pairs)
        assert await seqs_of(store, "ns/a", 2) == [s1, s3]
        assert await seqs_of(store, "ns/b", 1) == [s1]
        # s2 had no subscription: routed past, so pruned.
        await eventually(lambda: _events_are(store, 0 if backend.copies_on_route else 2))

    async def test_route_is_idempotent(self, backend: Backend, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        pairs = [(s1, "ns/a"), (s2, "ns/a"), (s2, "ns/b")]
        await store.route(LOG, s2, pairs)
        await store.route(LOG, s2, pairs)
        assert (await store.stats()).pending == backend.pending(pairs)
        assert await seqs_of(store, "ns/a", 2) == [s1, s2]
        # Replaying a route after a delivery finished must not resurrect it.
        await claim_n(store, "ns/a", 2)
        await store.finish("ns/a", [s1])
        await store.release("ns/a", [s2])
        await store.route(LOG, s2, pairs)
        assert await seqs_of(store, "ns/a", 1) == [s2]
        assert await store.cursor(LOG) == s2

    @pytest.mark.parametrize("bad", ["beyond-upto", "beyond-log"])
    async def test_invalid_route_records_nothing(self, store: EventStore, bad: str) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        upto, pairs = (s1, [(s1, "ns/a"), (s2, "ns/a")]) if bad == "beyond-upto" else (s2 + 5, [(s1, "ns/a")])
        with pytest.raises(ValueError):
            await store.route(LOG, upto, pairs)
        assert await store.cursor(LOG) == 0
        assert (await store.stats()).pending == 0
        assert await store.claim("ns/a", 10) == []

    async def test_claim_holds_until_finished_or_released(self, store: EventStore) -> None:
        await fill(store, 5)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
        first = await claim_n(store, "ns/a", 5)
        assert [(d.log, d.subscription, d.event.id, d.seq) for d in first] == [
            (LOG, "ns/a", f"e{n}", seq) for n, seq in enumerate(seqs, 1)
        ]
        assert await store.claim("ns/other", 10) == []
        await store.finish("ns/a", seqs[:2])
        await store.release("ns/a", seqs[3:])
        # seqs[2] is still held; the released ones come back, the finished ones never do.
        assert [d.seq for d in await claim_n(store, "ns/a", 2)] == seqs[3:]
        await store.release("ns/a", seqs[2:])
        assert [d.seq for d in await claim_n(store, "ns/a", 3)] == seqs[2:]

    async def test_claim_honours_limit(self, store: EventStore) -> None:
        await fill(store, 4)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
        got: list[int] = []
        end = time.monotonic() + 10
        while len(got) < 4:
            batch = await store.claim("ns/a", 2)
            assert len(batch) <= 2
            got += [d.seq for d in batch]
            assert time.monotonic() < end
        assert sorted(got) == seqs
        assert await store.claim("ns/a", 10) == []

    async def test_finish_removes_and_prunes(self, backend: Backend, store: EventStore) -> None:
        await fill(store, 3)
        seqs = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs] + [(seqs[0], "ns/b")])
        await claim_n(store, "ns/a", 3)
        await store.finish("ns/a", [seqs[0], seqs[2], 10**9])
        await store.release("ns/a", [seqs[1]])
        assert await seqs_of(store, "ns/a", 1) == [seqs[1]]
        assert await seqs_of(store, "ns/b", 1) == [seqs[0]]
        # seqs[0] is still pending for ns/b; seqs[2] is pruned.
        await eventually(lambda: _events_are(store, 0 if backend.copies_on_route else 2))
        await claim_n(store, "ns/b", 1)
        await claim_n(store, "ns/a", 1)
        await store.finish("ns/b", [seqs[0]])
        await store.finish("ns/a", [seqs[1]])
        await eventually(lambda: _events_are(store, 0))
        await eventually(lambda: _stats_are(store, bytes=0, pending=0))

    async def test_dead_letter_keeps_record_and_finishes(self, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a")])
        await claim_n(store, "ns/a", 2)
        first, second = dead(s2, reason="expired"), dead(s1)
        await store.dead_letter(first)
        await store.dead_letter(second)
        assert list(await store.dead_letters(LOG)) == [first, second]
        assert await store.dead_letters(OTHER_LOG) == []
        await eventually(lambda: _stats_are(store, dead_letters=2, pending=0))
        assert await store.claim("ns/a", 10) == []

    async def test_dead_letter_without_a_delivery(self, store: EventStore) -> None:
        # A source's event that never reached the Broker has no seq: it is kept with seq 0.
        await fill(store, 1)
        (s1,) = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s1, [(s1, "ns/a")])
        record = dead(0, reason="sink never accepted it", subscription="PingSource:ns/tick")
        await store.dead_letter(record)
        assert list(await store.dead_letters(LOG)) == [record]
        assert await seqs_of(store, "ns/a", 1) == [s1]
        stats = await store.stats()
        assert (stats.dead_letters, stats.pending) == (1, 1)

    async def test_forget_drops_only_that_subscription(self, backend: Backend, store: EventStore) -> None:
        await fill(store, 2)
        s1, s2 = [e.seq for e in await store.read(LOG, 0, 10)]
        await store.route(LOG, s2, [(s1, "ns/a"), (s2, "ns/a"), (s2, "ns/b")])
        await store.forget("ns/a")
        await store.forget("ns/never")
        assert await store.claim("ns/a", 10) == []
        assert await seqs_of(store, "ns/b", 1) == [s2]
        await eventually(lambda: _stats_are(store, pending=1))
        await eventually(lambda: _events_are(store, 0 if backend.copies_on_route else 1))

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
        await claim_n(store, "ns/a", 2)
        await store.dead_letter(dead(seqs[0]))
        await store.close()  # releases the claim on seqs[2]
        await store.close()

        again = backend.make(tmp_path)
        await again.open()
        try:
            assert await again.cursor(LOG) == seqs[2]
            assert [(d.seq, d.event.id) for d in await claim_n(again, "ns/a", 1)] == [(seqs[2], "e3")]
            assert [e.seq for e in await again.read(LOG, seqs[2], 10)] == [seqs[3]]
            assert list(await again.dead_letters(LOG)) == [dead(seqs[0])]
            await again.append(LOG, [event(5)])
            assert (await again.read(LOG, seqs[3], 10))[0].seq > seqs[3]
            events = 2 if backend.copies_on_route else 3
            await eventually(lambda: _stats_are(again, events=events, pending=1, dead_letters=1))
        finally:
            await again.close()


class SharedStoreContract:
    """What several handles on one shared backend must agree on (``Backend.shared``)."""

    @pytest.fixture
    async def pair(self, backend: Backend, tmp_path: Path) -> AsyncIterator[list[EventStore]]:
        if not backend.shared:
            pytest.skip("backend is not shared between processes")
        handles = [backend.make(tmp_path), backend.make(tmp_path)]
        for handle in handles:
            await handle.open()
        yield handles
        for handle in handles:
            await handle.close()

    async def test_claims_are_exclusive_across_handles(self, pair: list[EventStore]) -> None:
        a, b = pair
        await fill(a, 4)
        seqs = [e.seq for e in await a.read(LOG, 0, 10)]
        # One route per delivery: a backend may hand out one route's deliveries of a
        # subscription as a unit, all to one handle.
        for seq in seqs:
            await a.route(LOG, seq, [(seq, "ns/a")])
        held_a = await _claim_some(a, "ns/a", 2)
        held_b = await _claim_some(b, "ns/a", 2)
        assert sorted(held_a + held_b) == seqs
        assert await a.claim("ns/a", 10) == [] and await b.claim("ns/a", 10) == []
        await a.release("ns/a", held_a)
        assert sorted(await _claim_some(b, "ns/a", 2)) == sorted(held_a)

    async def test_claims_of_a_crashed_handle_move_on(self, backend: Backend, pair: list[EventStore]) -> None:
        assert backend.abandon is not None
        a, b = pair
        await fill(a, 3)
        seqs = [e.seq for e in await a.read(LOG, 0, 10)]
        await a.route(LOG, seqs[-1], [(s, "ns/a") for s in seqs])
        assert sorted(await _claim_some(a, "ns/a", 3)) == seqs
        await b.claim("ns/a", 10)
        await backend.abandon(a)
        assert sorted(await _claim_some(b, "ns/a", 3, deadline=30)) == seqs

    async def test_one_lease_per_log_and_it_moves(
        self, backend: Backend, pair: list[EventStore], tmp_path: Path
    ) -> None:
        assert backend.abandon is not None
        holder, other = await _lease_holder(pair)
        assert not await other.lease(LOG)
        await holder.close()
        await eventually(lambda: other.lease(LOG), deadline=30)
        third = backend.make(tmp_path)
        await third.open()
        try:
            assert not await third.lease(LOG)
            await backend.abandon(other)
            await eventually(lambda: third.lease(LOG), deadline=30)
        finally:
            await third.close()

    async def test_watch_tells_of_deliveries_routed_elsewhere(self, pair: list[EventStore]) -> None:
        a, b = pair
        told: set[str] = set()
        b.watch(told.update)
        await b.claim("ns/a", 10)  # a handle watches the subscriptions it claims for
        await fill(a, 1)
        (s1,) = [e.seq for e in await a.read(LOG, 0, 10)]
        await a.route(LOG, s1, [(s1, "ns/a")])

        async def heard() -> bool:
            return "ns/a" in told

        await eventually(heard, deadline=10)


async def _claim_some(store: EventStore, subscription: str, n: int, deadline: float = 10.0) -> list[int]:
    got: list[int] = []
    end = time.monotonic() + deadline
    while len(got) < n:
        got += [d.seq for d in await store.claim(subscription, n - len(got))]
        if len(got) < n:
            assert time.monotonic() < end, f"claimed {len(got)} of {n} deliveries of {subscription}"
            await asyncio.sleep(0.02)
    return got


async def _lease_holder(handles: list[EventStore]) -> tuple[EventStore, EventStore]:
    end = time.monotonic() + 30
    while True:
        held = [h for h in handles if await h.lease(LOG)]
        assert len(held) <= 1, "two handles hold the lease of one log"
        if held:
            (holder,) = held
            return holder, next(h for h in handles if h is not holder)
        assert time.monotonic() < end, "no handle got the lease"
        await asyncio.sleep(0.05)


async def _events_are(store: EventStore, n: int) -> bool:
    return (await store.stats()).events == n


async def _stats_are(store: EventStore, **expected: int) -> bool:
    stats = await store.stats()
    return all(getattr(stats, name) == value for name, value in expected.items())
