"""One subscription's worker: fetches its pending deliveries and runs them, bounded and ordered.

* Deliveries are claimed from the store in batches (:meth:`EventStore.claim`: nobody else is
  given them while this worker holds them) when the router or the store signals new ones, and
  every :data:`POLL_INTERVAL` seconds as a safety net while it holds any.
* A worker that wakes and finds nothing to claim, or that has nothing claimed and hears
  nothing for :data:`HIBERNATE_AFTER` seconds, hibernates: its task and buffers are released
  (an idle Trigger then costs a few hundred bytes) until :meth:`Worker.notify` or
  :meth:`Worker.poll` wakes it.
* At most ``SubscriptionPlan.max_in_flight`` deliveries run at once; at most ``batch`` more are
  buffered in memory.
* Ordered subscriptions: deliveries sharing a ``partitionkey`` value (events without one share a
  single key) run one after another in ``seq`` order; the next starts only once the previous
  has a final outcome. Different keys run in parallel.
* Final outcomes are written back with one :meth:`EventStore.finish` at a time, beside the
  loop: claiming and starting the next deliveries does not wait for the store to commit the
  last ones' outcomes.
* If the store cannot record a dead letter, that delivery is released and claimed again after
  a pause (its order relative to later events of the same key is then no longer kept).
* On stop, deliveries claimed but not finished are released, so another process (or the next
  start) delivers them.
* The courier and the counters are built on the first delivery the worker starts: most Triggers
  of a large set never match an event, and each would otherwise carry both for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from broker.delivery.courier import Courier
from broker.delivery.metrics import SubscriptionStats, zero_counters
from broker.delivery.running import Running
from broker.errors import StoreError
from broker.routing import SubscriptionPlan
from broker.store.base import Delivery, EventStore

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0
"""Seconds between fetches when no wake-up arrives (covers deliveries routed by another process)."""
HIBERNATE_AFTER = 1.0
"""Seconds an idle worker (nothing claimed) waits for news before it hibernates."""
STORE_PAUSE = 1.0
"""Seconds to wait after a store error before touching the store again."""

CourierFactory = Callable[[Callable[[], SubscriptionPlan], SubscriptionStats], Courier]
"""Builds a subscription's courier from a getter of its current plan and its counters."""


class Worker:
    """Runs one subscription's deliveries until :meth:`stop`."""

    # Slots: a large Trigger set keeps one Worker per Trigger, mostly hibernating.
    __slots__ = (
        "_batch", "_courier", "_drained", "_failing", "_first", "_generation", "_make_courier", "_plan",
        "_run_state", "_signalled", "_started", "_stopping", "_store", "stats",
    )

    def __init__(
        self,
        *,
        plan: SubscriptionPlan,
        store: EventStore,
        batch: int,
        courier: CourierFactory,
    ) -> None:
        self._plan = plan
        self._store = store
        self._batch = batch
        self._make_courier = courier
        self._courier: Courier | None = None
        self.stats: SubscriptionStats | None = None
        """Counters since the worker started; ``None`` until it starts its first delivery."""
        self._run_state: Running | None = None
        """Claimed deliveries and the loop's task; ``None`` while hibernating."""
        self._generation = 0
        self._signalled = False
        self._drained = False
        self._started = False
        self._stopping = False
        self._failing = False
        """Whether the last store call failed: repeats of an error are logged at debug level, so
        a thousand workers retrying through an outage do not flood the log."""
        self._first: asyncio.Future[None] | None = None
        """Done once the worker has asked the store for deliveries (made by :meth:`start`)."""

    @property
    def plan(self) -> SubscriptionPlan:
        return self._plan

    def counters(self) -> dict[str, int]:
        """:meth:`SubscriptionStats.as_dict`, all zero while no delivery has started."""
        return zero_counters() if self.stats is None else self.stats.as_dict()

    def _current_plan(self) -> SubscriptionPlan:
        return self._plan

    def _courier_now(self) -> Courier:
        courier = self._courier
        if courier is None:
            self.stats = SubscriptionStats(self._plan.name)
            # Read through the worker, so a plan swapped by update() applies to in-flight
            # deliveries from their next attempt.
            courier = self._courier = self._make_courier(self._current_plan, self.stats)
        return courier

    @property
    def hibernating(self) -> bool:
        """Whether the worker holds no claims and runs no task (it wakes on a signal)."""
        return self._run_state is None

    def update(self, plan: SubscriptionPlan) -> None:
        """Swap the plan in place; in-flight deliveries use it from their next attempt."""
        self._plan = plan
        self._signal()

    def notify(self) -> None:
        """New pending deliveries exist (called by the router after :meth:`EventStore.route`)."""
        self._generation += 1
        self._drained = False
        self._signal()

    def poll(self) -> None:
        """Claim once even without news: the safety net for deliveries nobody announced
        (claims expired in a crashed process sharing the store)."""
        self._drained = False
        self._signal()

    def start(self) -> None:
        self._started = True
        self._first = asyncio.get_running_loop().create_future()
        self._signal()

    async def first_claim(self) -> None:
        """Return once the worker has asked the store for deliveries since :meth:`start` (or
        has stopped)."""
        if self._first is not None and not self._stopping:
            await asyncio.shield(self._first)

    def _mark_claimed(self) -> None:
        first, self._first = self._first, None  # not kept: every idle worker would hold one
        if first is not None and not first.done():
            first.set_result(None)

    async def stop(self, grace: float) -> None:
        """Stop fetching; give in-flight deliveries ``grace`` seconds, then cancel the rest.

        Cancelled deliveries stay pending in the store and are delivered again after a restart.
        """
        self._stopping = True
        self._mark_claimed()  # nobody waits for a stopped worker
        run, self._run_state = self._run_state, None
        if run is None:
            return
        if run.loop is not None:
            run.loop.cancel()
            await asyncio.gather(run.loop, return_exceptions=True)
        if run.flushing is not None:
            # Awaited, not cancelled: the outcomes it writes would otherwise be delivered again.
            await asyncio.gather(run.flushing, return_exceptions=True)
        tasks = list(run.tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._flush(run)
            unfinished = sorted(run.known)
            if unfinished:
                await self._store.release(self._plan.name, unfinished)
        except StoreError as exc:
            log.error("could not record the outcome of %d claimed deliveries of %s: %s "
                      "(they will be redelivered)", len(run.known), self._plan.name, exc)

    def _signal(self) -> None:
        self._signalled = True
        run = self._run_state
        if run is None:
            if self._started and not self._stopping:
                run = self._run_state = Running()
                run.loop = asyncio.create_task(self._run(run), name=f"weir-worker-{self._plan.name}")
        elif run.waiter is not None and not run.waiter.done():
            run.waiter.set_result(None)

    async def _run(self, run: Running) -> None:
        while not self._stopping:
            self._signalled = False
            try:
                self._flush_soon(run)
                await self._fetch(run)
                self._mark_claimed()
            except Exception as exc:
                await self._pause_after(exc)
                continue
            if self._failing:
                self._failing = False
                log.info("worker %s: the store answers again", self._plan.name)
            self._launch(run)
            if self._drained and not run.worked:
                self._run_state = None  # woken for nothing (a poll, a start): back to sleep
                return
            if self._drained or not self._has_room(run):
                # Jittered so thousands of idle workers do not all query the store at once.
                timeout = POLL_INTERVAL * (0.5 + random.random()) if run.known else HIBERNATE_AFTER
                if not await self._wait(run, timeout):
                    if not run.known:
                        self._run_state = None  # hibernate; the next signal starts a new loop
                        return
                    self._drained = False

    async def _wait(self, run: Running, timeout: float) -> bool:
        """Wait for a signal for up to ``timeout`` seconds; whether one came."""
        if self._signalled:
            return True
        run.waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await run.waiter
            return True
        except TimeoutError:
            return self._signalled
        finally:
            run.waiter = None

    async def _pause_after(self, exc: Exception) -> None:
        """Log a failed store call (repeats of a store error at debug level) and wait before
        the next one, so a persistent failure does not spin."""
        if isinstance(exc, StoreError):
            log.log(logging.DEBUG if self._failing else logging.WARNING,
                    "store error in worker %s: %s", self._plan.name, exc)
            self._failing = True
            await asyncio.sleep(min(exc.retry_after, STORE_PAUSE))
        else:
            log.exception("worker %s failed; retrying", self._plan.name, exc_info=exc)
            await asyncio.sleep(STORE_PAUSE)

    def _has_room(self, run: Running) -> bool:
        return len(run.ready) < self._plan.max_in_flight and self._room(run) > 0

    @property
    def _prefetch(self) -> int:
        # Buffer no more than one in-flight window ahead: with many busy Triggers, a full store
        # batch per worker would hold hundreds of events each in memory.
        return min(self._batch, self._plan.max_in_flight)

    def _room(self, run: Running) -> int:
        return self._plan.max_in_flight + self._prefetch - len(run.known) + len(run.done)

    async def _fetch(self, run: Running) -> None:
        if self._drained or not self._has_room(run):
            return
        limit = min(self._prefetch, self._room(run))
        generation = self._generation
        found = await self._store.claim(self._plan.name, limit, ordered=self._plan.ordered)
        run.worked = run.worked or bool(found)
        for delivery in found:
            if delivery.seq not in run.known:
                run.known.add(delivery.seq)
                run.enqueue(delivery, ordered=self._plan.ordered)
        # A notify() during the fetch may have routed more than we saw: fetch again.
        self._drained = len(found) < limit and generation == self._generation

    def _launch(self, run: Running) -> None:
        while run.ready and len(run.tasks) < self._plan.max_in_flight:
            delivery, key = run.ready.popleft()
            courier = self._courier_now()
            run.tasks[delivery.seq] = asyncio.create_task(self._carry(run, courier, delivery, key))
        if self.stats is not None:
            self.stats.in_flight = len(run.tasks)

    async def _carry(self, run: Running, courier: Courier, delivery: Delivery, key: object) -> None:
        try:
            if await courier.carry(delivery):
                run.done.append(delivery.seq)
            else:
                run.known.discard(delivery.seq)
        except StoreError as exc:
            log.error("%s seq %d stays pending, the store failed: %s",
                      delivery.subscription, delivery.seq, exc)
            await self._retry_later(run, delivery.seq)
        except Exception:
            log.exception("%s seq %d failed unexpectedly; it stays pending",
                          delivery.subscription, delivery.seq)
            await self._retry_later(run, delivery.seq)
        finally:
            run.tasks.pop(delivery.seq, None)
            if self.stats is not None:
                self.stats.in_flight = len(run.tasks)
            run.release(key)
            if key is not None:
                # A shared store hands out an ordered subscription's deliveries one at a time,
                # so a short claim did not mean there were no more.
                self._drained = False
            self._signal()

    async def _retry_later(self, run: Running, seq: int) -> None:
        # Holding the slot for a moment keeps a persistent failure from spinning.
        await asyncio.sleep(STORE_PAUSE)
        try:
            await self._store.release(self._plan.name, [seq])
        except StoreError as exc:
            log.warning("could not release %s seq %d: %s", self._plan.name, seq, exc)
            return
        run.known.discard(seq)
        self._drained = False

    def _flush_soon(self, run: Running) -> None:
        """Write finished outcomes back in a task of their own, unless one is being written.

        On SQLite a finish waits for a group commit (its linger, then the fsync of the append
        it joins): about 1-3 ms that a new event's claim used to wait behind."""
        if run.done and run.flushing is None:
            run.flushing = asyncio.create_task(self._flush_beside(run))

    async def _flush_beside(self, run: Running) -> None:
        try:
            await self._flush(run)
        except Exception as exc:
            await self._pause_after(exc)
        finally:
            run.flushing = None
            if self._plan.ordered:
                # A shared store hands out an ordered key's next delivery once this one is
                # finished: a claim made while the finish was being written found nothing.
                self._drained = False
            # Outcomes may have arrived meanwhile, and written ones free room to claim.
            self._signal()

    async def _flush(self, run: Running) -> None:
        if not run.done:
            return
        seqs, run.done = run.done, []
        try:
            await self._store.finish(self._plan.name, seqs)
        except BaseException:
            run.done = seqs + run.done
            raise
        run.known.difference_update(seqs)
