"""The dispatcher: one router per Broker and one worker per subscription (Trigger).

It runs the desired state given to :meth:`Dispatcher.apply` against an
:class:`~broker.store.base.EventStore`, delivering through a
:class:`~broker.delivery.sender.Sender` and accepting replies through
:class:`~broker.ingest.Ingest`. Subscriptions are independent: each has its own worker,
in-flight limit and retry schedule, so a slow or failing subscriber never delays another.

The dispatcher owns its routers and workers only; the store, sender and ingest are the
caller's to open and close.

On a store only this process uses (``start_dormant`` on), subscriptions applied while the store
holds no pending delivery at all start *dormant*: no worker exists until the router first
announces a delivery for them. Such a worker's first claim could find nothing, and every later
delivery is announced, so this changes nothing but memory: most Triggers of a large set never
match an event, and a worker (with the store's bookkeeping of its first claim) costs each about
400 bytes. A plan is read from a Broker's ``subscriptions`` only where it is used (a starting
or updated worker): the mapping may build it on every read, and keep none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.delivery.courier import Courier
from broker.delivery.deadletter import DeadLetterHandler
from broker.delivery.metrics import SubscriptionStats, zero_counters
from broker.delivery.router import Router
from broker.delivery.sender import Sender
from broker.delivery.worker import POLL_INTERVAL, CourierFactory, Worker
from broker.errors import StoreError
from broker.ingest import Ingest
from broker.routing import BrokerPlan, SubscriptionPlan
from broker.store.base import EventStore

log = logging.getLogger(__name__)

SWEEP_RATE = 500.0
"""Hibernating workers polled per second at most: each is polled every :data:`POLL_INTERVAL`
seconds, or every ``count / SWEEP_RATE`` seconds when there are more of them."""
SWEEP_TICK = 0.1
START_BATCH = 64
"""New workers that make their first claim at once: starting 10,000 Triggers together would
queue 10,000 store reads (memory that stays with the process after the peak)."""
START_WAIT = 1.0
"""Seconds a start batch waits for its first claims before the next batch starts anyway
(a store that fails keeps its workers retrying)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatcherConfig:
    """Dispatcher-wide settings."""

    batch: int = 256
    """Log entries routed, and pending deliveries fetched, per store call."""
    default_timeout: float | None = 30.0
    """Seconds bounding one attempt when ``DeliverySpec.timeout`` is ``None`` (``None``: no bound)."""
    max_event_age: float | None = None
    """Seconds after acceptance (``knativearrivaltime``) a pending delivery is no longer attempted
    but recorded as a dead letter with reason ``"expired"``; ``None`` keeps trying forever."""
    poll_idle: bool = True
    """Poll hibernating workers (a sweep at most :data:`SWEEP_RATE` per second). Needed when
    other processes share the store and its ``watch`` does not tell of everything: deliveries
    they route, and claims that expire there, are then announced to no worker here
    (:func:`broker.store.factory.needs_polling`: NATS, not Kafka). A store only this process
    uses announces every new delivery, so there the sweep would only cost CPU (a few percent
    per event with 1,000 idle Triggers)."""
    start_dormant: bool = False
    """Let subscriptions start dormant while the store holds nothing pending (see the module
    docstring): only for a store this process alone uses. On a shared one another process may
    route, and a store may tell ``watch`` only of subscriptions claimed on this handle."""
    empty_pause: float = 0.0
    """Seconds between cursor moves of a Broker without subscriptions (its events go nowhere);
    0 moves it as events arrive. Where a move is a round trip to a shared store (a fetch, a read
    of the last record and an offset commit on Kafka) following the log as it grows cost about
    what routing a busy Broker does; on SQLite, letting the unrouted tail grow instead cost more
    than moving the cursor (S6 with ``--role all``, bench/RESULTS.md)."""


@dataclass(slots=True)
class _Broker:
    router: Router
    plan: BrokerPlan
    """The plan the router runs."""
    workers: dict[str, Worker] = field(default_factory=dict)
    """The workers of ``plan``'s subscriptions that are not dormant."""


class Dispatcher:
    """Routes and delivers the events of every Broker in the applied plan."""

    def __init__(
        self,
        *,
        store: EventStore,
        sender: Sender,
        ingest: Ingest,
        config: DispatcherConfig = DispatcherConfig(),
    ) -> None:
        self._store = store
        self._sender = sender
        self._ingest = ingest
        self._config = config
        self._dead_letters = DeadLetterHandler(
            store=store, sender=sender, default_timeout=config.default_timeout
        )
        self._brokers: dict[str, _Broker] = {}
        self._workers: dict[str, Worker] = {}
        self._desired: dict[str, BrokerPlan] = {}
        self._running = False
        self._sweeper: asyncio.Task[None] | None = None
        self._cold: deque[Worker] = deque()
        """Workers waiting for their start batch."""
        self._starter: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # One factory for every worker: a closure per worker would cost each idle Trigger.
        self._courier_factory: CourierFactory = self._courier

    async def start(self) -> None:
        """Start routing and delivering the plan applied so far (pending deliveries resume)."""
        async with self._lock:
            if not self._running:
                # Deliveries routed by another dispatcher process wake the matching worker.
                self._store.watch(self._notify)
                if self._config.poll_idle:
                    self._sweeper = asyncio.create_task(self._sweep(), name="weir-dispatcher-sweep")
            self._running = True
            await self._reconcile()

    async def apply(self, brokers: Mapping[str, BrokerPlan]) -> None:
        """Make ``brokers`` (keyed by log) the desired state.

        New Brokers and subscriptions start. A changed subscription plan is swapped in place
        without losing pending deliveries; in-flight ones use it from their next attempt. A
        removed subscription's worker stops (in-flight attempts are cancelled) and its pending
        deliveries are dropped with :meth:`EventStore.forget`. A removed Broker's router and
        workers stop; its log and pending deliveries stay in the store.

        A new subscription sees only events routed after it was applied (Knative: a new
        Trigger receives events accepted after it became ready). On a Broker that had no
        subscription those include events accepted up to :attr:`DispatcherConfig.empty_pause`
        seconds before (see the router).
        """
        async with self._lock:
            self._desired = dict(brokers)
            if self._running:
                await self._reconcile()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop routing, give in-flight deliveries ``grace`` seconds, cancel the rest.

        Unfinished deliveries stay pending in the store and are delivered after a restart.
        """
        async with self._lock:
            self._running = False
            for task in (self._sweeper, self._starter):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._sweeper = self._starter = None
            self._cold.clear()
            brokers, self._brokers = self._brokers, {}
            self._workers = {}
            await asyncio.gather(*(b.router.stop() for b in brokers.values()))
            await asyncio.gather(*(w.stop(grace) for b in brokers.values() for w in b.workers.values()))

    def stats(self) -> dict[str, Any]:
        """Per subscription name: ``in_flight``, ``delivered``, ``retries``, ``dead_lettered``,
        ``replies`` and ``replies_dropped`` since its worker started (all zero while dormant)."""
        names = set(self._workers).union(*(b.plan.subscriptions for b in self._brokers.values()))
        found = {name: self._workers.get(name) for name in sorted(names)}
        return {name: zero_counters() if w is None else w.counters() for name, w in found.items()}

    def awake(self) -> list[str]:
        """Names of the subscriptions whose worker is awake (holds claims or heard news within
        the last :data:`~broker.delivery.worker.HIBERNATE_AFTER` seconds)."""
        return sorted(name for name, worker in self._workers.items() if not worker.hibernating)

    async def _reconcile(self) -> None:
        # Asked before anything is removed: forgetting a removed subscription's deliveries
        # must not make its successor dormant while they were pending.
        dormant = await self._nothing_pending()
        # All removals first, so a subscription that moved to another Broker is dropped (and
        # forgotten) before its new worker starts.
        for log_name in [n for n in self._brokers if n not in self._desired]:
            broker = self._brokers.pop(log_name)
            await broker.router.stop()
            await asyncio.gather(*(self._drop(w, forget=False) for w in broker.workers.values()))
            log.info("stopped broker %s", log_name)
        for log_name, broker in self._brokers.items():
            wanted = self._desired[log_name].subscriptions
            removed = [broker.workers.pop(n) for n in list(broker.workers) if n not in wanted]
            await asyncio.gather(*(self._drop(w, forget=True) for w in removed))
        for log_name, plan in self._desired.items():
            existing = self._brokers.get(log_name)
            if existing is None:
                broker = self._brokers[log_name] = _Broker(router=self._router(plan), plan=plan)
                broker.router.start()
                log.info("started broker %s", log_name)
            else:
                broker = existing
                broker.plan = plan
                broker.router.update(plan)
            subscriptions = plan.subscriptions
            for name in subscriptions:
                worker = broker.workers.get(name)
                if worker is None and dormant:
                    # Read for the log alone: a plan may be built on every read of the mapping.
                    if log.isEnabledFor(logging.INFO):
                        log.info("started subscription %s -> %s", name, subscriptions[name].subscriber)
                    continue
                sub = subscriptions[name]
                if worker is None:
                    worker = broker.workers[name] = self._workers[name] = self._worker(sub)
                    self._enlist(worker)
                    log.info("started subscription %s -> %s", name, sub.subscriber)
                elif worker.plan != sub:
                    worker.update(sub)

    async def _nothing_pending(self) -> bool:
        """Whether new subscriptions may start dormant (see the module docstring)."""
        if not self._config.start_dormant:
            return False  # other processes route too, and announce nothing here
        try:
            return (await self._store.stats()).pending == 0
        except StoreError:
            return False

    async def _drop(self, worker: Worker, *, forget: bool) -> None:
        name = worker.plan.name
        if self._workers.get(name) is worker:
            del self._workers[name]
        await worker.stop(0.0)
        if forget:
            await self._store.forget(name)
            log.info("removed subscription %s", name)

    def _router(self, plan: BrokerPlan) -> Router:
        return Router(plan=plan, store=self._store, batch=self._config.batch, notify=self._notify,
                      empty_pause=self._config.empty_pause)

    def _worker(self, plan: SubscriptionPlan) -> Worker:
        return Worker(plan=plan, store=self._store, batch=self._config.batch, courier=self._courier_factory)

    def _courier(self, plan: Callable[[], SubscriptionPlan], stats: SubscriptionStats) -> Courier:
        """A courier for a worker's first delivery (see :data:`CourierFactory`)."""
        return Courier(
            plan=plan,
            sender=self._sender,
            ingest=self._ingest,
            dead_letters=self._dead_letters,
            stats=stats,
            default_timeout=self._config.default_timeout,
            max_event_age=self._config.max_event_age,
        )

    def _enlist(self, worker: Worker) -> None:
        self._cold.append(worker)
        if self._starter is None or self._starter.done():
            self._starter = asyncio.create_task(self._start_cold(), name="weir-dispatcher-start")

    async def _start_cold(self) -> None:
        """Start enlisted workers :data:`START_BATCH` at a time, each batch once the previous
        one has claimed (or after :data:`START_WAIT` seconds)."""
        while self._cold:
            batch = [self._cold.popleft() for _ in range(min(START_BATCH, len(self._cold)))]
            for worker in batch:
                worker.start()
            claims = [asyncio.ensure_future(worker.first_claim()) for worker in batch]
            _, late = await asyncio.wait(claims, timeout=START_WAIT)
            for waiting in late:
                waiting.cancel()

    async def _sweep(self) -> None:
        """Poll hibernating workers in turn, spread evenly over each round (the safety net for
        deliveries nobody announced; awake workers poll on their own)."""
        while True:
            names = list(self._workers)
            if not names:
                await asyncio.sleep(POLL_INTERVAL)
                continue
            period = max(POLL_INTERVAL, len(names) / SWEEP_RATE)
            per_tick = max(1, math.ceil(len(names) * SWEEP_TICK / period))
            pause = period / math.ceil(len(names) / per_tick)
            for start in range(0, len(names), per_tick):
                for name in names[start : start + per_tick]:
                    worker = self._workers.get(name)
                    if worker is not None and worker.hibernating:
                        worker.poll()
                await asyncio.sleep(pause)

    def _notify(self, names: Iterable[str]) -> None:
        for name in names:
            worker = self._workers.get(name) or self._wake(name)
            if worker is not None:
                worker.notify()

    def _wake(self, name: str) -> Worker | None:
        """A started worker for dormant subscription ``name``; ``None`` when no Broker has it."""
        if not self._running:
            return None
        for log_name, broker in self._brokers.items():
            # Also still wanted: during a reconcile the router may announce a removed one.
            wanted = self._desired.get(log_name)
            if wanted is None or name not in broker.plan.subscriptions:
                continue
            sub = wanted.subscriptions.get(name)
            if sub is not None:
                worker = broker.workers[name] = self._workers[name] = self._worker(sub)
                worker.start()
                return worker
        return None
