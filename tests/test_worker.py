"""One worker on a memory store: what an idle subscription holds, and what its first delivery builds.

The courier factory is the dispatcher's own shape (plan getter, counters -> Courier) building a
real :class:`Courier` over a real :class:`HttpSender`; it only counts how often it is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from broker.delivery.courier import Courier
from broker.delivery.deadletter import DeadLetterHandler
from broker.delivery.dispatcher import Dispatcher, DispatcherConfig
from broker.delivery.http_sender import HttpSender
from broker.delivery.metrics import COUNTERS, SubscriptionStats, zero_counters
from broker.delivery.spec import DeliverySpec
from broker.delivery.worker import Worker
from broker.errors import StoreUnavailable
from broker.ingest import Ingest
from broker.routing import BrokerPlan, SubscriptionPlan
from broker.store.base import Delivery
from broker.store.memory import MemoryStore
from tests.sinks import RecordingSink, eventually
from tests.test_dispatcher import LOG, NAMESPACE, TypeMatcher, event, name

ZEROS = {key: 0 for key in COUNTERS}


class Factory:
    """Builds real couriers and remembers the counters each was given."""

    def __init__(self, store: MemoryStore, sender: HttpSender) -> None:
        self._store, self._sender = store, sender
        self.built: list[SubscriptionStats] = []

    def __call__(self, plan: Callable[[], SubscriptionPlan], stats: SubscriptionStats) -> Courier:
        self.built.append(stats)
        return Courier(
            plan=plan,
            sender=self._sender,
            ingest=Ingest(self._store),
            dead_letters=DeadLetterHandler(store=self._store, sender=self._sender, default_timeout=5.0),
            stats=stats,
            default_timeout=5.0,
            max_event_age=None,
        )


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    await opened.open()
    yield opened



def plan(sub_name: str, url: str) -> SubscriptionPlan:
    return SubscriptionPlan(name=sub_name, namespace=NAMESPACE, subscriber=url, delivery=DeliverySpec())


async def route(store: MemoryStore, sub_name: str) -> None:
    await store.append(LOG, [event()])
    entries = await store.read(LOG, 0, 100)
    last = entries[-1]
    await store.route(LOG, last.seq, [(last.seq, sub_name)])


def test_zero_counters_match_fresh_stats() -> None:
    assert zero_counters() == SubscriptionStats("x").as_dict() == ZEROS
    first = zero_counters()
    first["delivered"] = 5
    assert zero_counters() == ZEROS  # each call is a new dict


async def test_worker_that_never_claims_builds_no_courier_or_stats(
    store: MemoryStore, sender: HttpSender
) -> None:
    factory = Factory(store, sender)
    t = name("idle")
    worker = Worker(plan=plan(t, "http://127.0.0.1:9/never"), store=store, batch=16, courier=factory)
    worker.start()
    await worker.first_claim()
    worker.notify()  # news without deliveries: still nothing to carry
    await eventually(lambda: worker.hibernating, what="worker hibernating")
    assert factory.built == []
    assert worker.stats is None
    assert worker.counters() == ZEROS
    await worker.stop(0.0)


async def test_first_delivery_builds_one_courier_for_all_later_ones(
    store: MemoryStore, sender: HttpSender
) -> None:
    factory = Factory(store, sender)
    t = name("busy")
    async with RecordingSink() as sink:
        worker = Worker(plan=plan(t, sink.url_for("/old")), store=store, batch=16, courier=factory)
        worker.start()
        await worker.first_claim()
        await route(store, t)
        worker.notify()
        await eventually(lambda: worker.counters()["delivered"] == 1, what="first delivery")
        # The courier reads the plan through the worker: a swapped plan applies to it.
        worker.update(plan(t, sink.url_for("/new")))
        await route(store, t)
        worker.notify()
        await eventually(lambda: worker.counters()["delivered"] == 2, what="second delivery")
        await worker.stop(0.0)
    assert len(factory.built) == 1
    assert factory.built[0] is worker.stats
    assert worker.counters() == {**ZEROS, "delivered": 2}
    assert [len(sink.requests(p)) for p in ("/old", "/new")] == [1, 1]


class Flaky(MemoryStore):
    """A memory store whose first ``failures`` claims fail as an unreachable store's would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the store is away", retry_after=0.001)
        return await super().claim(subscription, limit, ordered=ordered)


async def test_a_failing_store_is_logged_once_per_outage(
    sender: HttpSender, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(failures=20)
    await flaky.open()
    t = name("flaky")
    caplog.set_level(logging.DEBUG, logger="broker.delivery.worker")
    async with RecordingSink() as sink:
        worker = Worker(plan=plan(t, sink.url_for("/")), store=flaky, batch=16,
                        courier=Factory(flaky, sender))
        await route(flaky, t)
        worker.start()
        await eventually(lambda: worker.counters()["delivered"] == 1, what="delivery after the outage")
        await worker.stop(0.0)
    levels = [r.levelname for r in caplog.records if r.name == "broker.delivery.worker"]
    assert levels == ["WARNING"] + ["DEBUG"] * 19 + ["INFO"]


async def test_dispatcher_reports_zeros_for_an_idle_subscription(
    store: MemoryStore, sender: HttpSender
) -> None:
    idle = name("idle")
    dispatcher = Dispatcher(store=store, sender=sender, ingest=Ingest(store),
                            config=DispatcherConfig(default_timeout=5.0))
    subs = {idle: plan(idle, "http://127.0.0.1:9/never")}
    await dispatcher.apply({LOG: BrokerPlan(log=LOG, matcher=TypeMatcher({}), subscriptions=subs)})
    await dispatcher.start()
    try:
        await eventually(lambda: idle not in dispatcher.awake(), what="idle worker hibernating")
        assert dispatcher.stats() == {idle: ZEROS}
    finally:
        await dispatcher.stop(grace=0.0)



class HeldFinish(MemoryStore):
    """A memory store whose outcome writes wait until :attr:`gate` opens; the first
    ``failures`` of them then fail as an unreachable store's would."""

    def __init__(self, *, failures: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.failures = failures
        self.writes = 0

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        self.writes += 1
        await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the store is away", retry_after=0.001)
        await super().finish(subscription, seqs)


async def none_pending(store: MemoryStore) -> bool:
    return (await store.stats()).pending == 0


async def delivered_once(held: HeldFinish, sink: RecordingSink, sender: HttpSender) -> Worker:
    """A started worker that delivered one event and is writing its outcome back (held)."""
    t = name("held")
    worker = Worker(plan=plan(t, sink.url_for("/")), store=held, batch=16, courier=Factory(held, sender))
    worker.start()
    await worker.first_claim()
    await route(held, t)
    worker.notify()
    await eventually(lambda: held.writes == 1, what="the first outcome being written")
    return worker


@pytest.mark.parametrize("failures", [0, 3])
async def test_the_next_delivery_does_not_wait_for_the_last_outcome_to_be_written(
    sender: HttpSender, failures: int
) -> None:
    held = HeldFinish(failures=failures)
    await held.open()
    async with RecordingSink() as sink:
        worker = await delivered_once(held, sink, sender)
        await route(held, worker.plan.name)
        worker.notify()
        await eventually(lambda: len(sink.requests("/")) == 2, what="the second delivery, the first held")
        assert (await held.stats()).pending == 2
        held.gate.set()
        # A failed write is tried again: the outcomes are kept, not delivered again.
        await eventually(lambda: none_pending(held), what="both outcomes written")
        await worker.stop(0.0)
    assert len(sink.requests("/")) == 2
    assert held.writes >= failures + 1


async def test_stop_waits_for_the_outcomes_being_written(sender: HttpSender) -> None:
    held = HeldFinish()
    await held.open()
    async with RecordingSink() as sink:
        worker = await delivered_once(held, sink, sender)
        stopping = asyncio.create_task(worker.stop(0.0))
        await asyncio.sleep(0)
        assert not stopping.done()
        held.gate.set()
        await stopping
    assert await none_pending(held)  # written, not released for another delivery
