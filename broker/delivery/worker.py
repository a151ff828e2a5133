"""One subscription's worker: fetches its pending deliveries and runs them, bounded and ordered.

* Deliveries are claimed from the store in batches (:meth:`EventStore.claim`: nobody else is
  given them while this worker holds them) when the router or the store signals new ones, and
  every :data:`POLL_INTERVAL` seconds as a safety net.
* At most ``SubscriptionPlan.max_in_flight`` deliveries run at once; at most ``batch`` more are
  buffered in memory.
* Ordered subscriptions: deliveries sharing a ``partitionkey`` value (events without one share a
  single key) run one after another in ``seq`` order; the next starts only once the previous
  has a final outcome. Different keys run in parallel.
* Final outcomes are written back with one :meth:`EventStore.finish` per loop turn.
* If the store cannot record a dead letter, that delivery is released and claimed again after
  a pause (its order relative to later events of the same key is then no longer kept).
* On stop, deliveries claimed but not finished are released, so another process (or the next
  start) delivers them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable

from broker.delivery.courier import Courier
from broker.delivery.metrics import SubscriptionStats
from broker.errors import StoreError
from broker.event import PARTITION_KEY
from broker.routing import SubscriptionPlan
from broker.store.base import Delivery, EventStore

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0
"""Seconds between fetches when no wake-up arrives (covers deliveries routed by another process)."""
STORE_PAUSE = 1.0
"""Seconds to wait after a store error before touching the store again."""

_NO_KEY = object()


class Worker:
    """Runs one subscription's deliveries until :meth:`stop`."""

    def __init__(
        self,
        *,
        plan: SubscriptionPlan,
        store: EventStore,
        batch: int,
        stats: SubscriptionStats,
        courier: Callable[[Callable[[], SubscriptionPlan]], Courier],
    ) -> None:
        self._plan = plan
        self._store = store
        self._batch = batch
        self.stats = stats
        self._courier = courier(lambda: self._plan)
        self._known: set[int] = set()
        """Seqs claimed: buffered, in flight, or finished but not yet written back."""
        self._ready: deque[tuple[Delivery, object]] = deque()
        """Deliveries to start, each with its ordering key (``None`` when unordered)."""
        self._blocked: dict[object, deque[tuple[Delivery, object]]] = {}
        self._claimed: set[object] = set()
        """Ordering keys with a delivery ready or in flight."""
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._done: list[int] = []
        self._wake = asyncio.Event()
        self._generation = 0
        self._drained = False
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None

    @property
    def plan(self) -> SubscriptionPlan:
        return self._plan

    def update(self, plan: SubscriptionPlan) -> None:
        """Swap the plan in place; in-flight deliveries use it from their next attempt."""
        self._plan = plan
        self._wake.set()

    def notify(self) -> None:
        """New pending deliveries exist (called by the router after :meth:`EventStore.route`)."""
        self._generation += 1
        self._drained = False
        self._wake.set()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name=f"weir-worker-{self._plan.name}")

    async def stop(self, grace: float) -> None:
        """Stop fetching; give in-flight deliveries ``grace`` seconds, then cancel the rest.

        Cancelled deliveries stay pending in the store and are delivered again after a restart.
        """
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._flush()
            unfinished = sorted(self._known)
            if unfinished:
                await self._store.release(self._plan.name, unfinished)
        except StoreError as exc:
            log.error("could not record the outcome of %d claimed deliveries of %s: %s "
                      "(they will be redelivered)", len(self._known), self._plan.name, exc)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._flush()
                await self._fetch()
            except StoreError as exc:
                log.warning("store error in worker %s: %s", self._plan.name, exc)
                await asyncio.sleep(min(exc.retry_after, STORE_PAUSE))
                continue
            except Exception:
                log.exception("worker %s failed; retrying", self._plan.name)
                await asyncio.sleep(STORE_PAUSE)
                continue
            self._launch()
            if self._drained or not self._has_room():
                try:
                    # Jittered so thousands of idle workers do not all query the store at once.
                    async with asyncio.timeout(POLL_INTERVAL * (0.5 + random.random())):
                        await self._wake.wait()
                except TimeoutError:
                    self._drained = False

    def _has_room(self) -> bool:
        return len(self._ready) < self._plan.max_in_flight and self._room() > 0

    @property
    def _prefetch(self) -> int:
        # Buffer no more than one in-flight window ahead: with many busy Triggers, a full store
        # batch per worker would hold hundreds of events each in memory.
        return min(self._batch, self._plan.max_in_flight)

    def _room(self) -> int:
        return self._plan.max_in_flight + self._prefetch - len(self._known) + len(self._done)

    async def _fetch(self) -> None:
        if self._drained or not self._has_room():
            return
        limit = min(self._prefetch, self._room())
        generation = self._generation
        found = await self._store.claim(self._plan.name, limit, ordered=self._plan.ordered)
        for delivery in found:
            if delivery.seq not in self._known:
                self._known.add(delivery.seq)
                self._enqueue(delivery)
        # A notify() during the fetch may have routed more than we saw: fetch again.
        self._drained = len(found) < limit and generation == self._generation

    def _enqueue(self, delivery: Delivery) -> None:
        key: object = None
        if self._plan.ordered:
            key = delivery.event.text(PARTITION_KEY) or _NO_KEY
            if key in self._claimed:
                self._blocked.setdefault(key, deque()).append((delivery, key))
                return
            self._claimed.add(key)
        self._ready.append((delivery, key))

    def _launch(self) -> None:
        while self._ready and len(self._tasks) < self._plan.max_in_flight:
            delivery, key = self._ready.popleft()
            task = asyncio.create_task(self._carry(delivery, key))
            self._tasks[delivery.seq] = task
        self.stats.in_flight = len(self._tasks)

    async def _carry(self, delivery: Delivery, key: object) -> None:
        try:
            if await self._courier.carry(delivery):
                self._done.append(delivery.seq)
            else:
                self._known.discard(delivery.seq)
        except StoreError as exc:
            log.error("%s seq %d stays pending, the store failed: %s",
                      delivery.subscription, delivery.seq, exc)
            await self._retry_later(delivery.seq)
        except Exception:
            log.exception("%s seq %d failed unexpectedly; it stays pending",
                          delivery.subscription, delivery.seq)
            await self._retry_later(delivery.seq)
        finally:
            self._tasks.pop(delivery.seq, None)
            self.stats.in_flight = len(self._tasks)
            self._release(key)
            if key is not None:
                # A shared store hands out an ordered subscription's deliveries one at a time,
                # so a short claim did not mean there were no more.
                self._drained = False
            self._wake.set()

    async def _retry_later(self, seq: int) -> None:
        # Holding the slot for a moment keeps a persistent failure from spinning.
        await asyncio.sleep(STORE_PAUSE)
        try:
            await self._store.release(self._plan.name, [seq])
        except StoreError as exc:
            log.warning("could not release %s seq %d: %s", self._plan.name, seq, exc)
            return
        self._known.discard(seq)
        self._drained = False

    def _release(self, key: object) -> None:
        if key is None:
            return
        waiting = self._blocked.get(key)
        if waiting:
            self._ready.append(waiting.popleft())
            if not waiting:
                del self._blocked[key]
        else:
            self._claimed.discard(key)

    async def _flush(self) -> None:
        if not self._done:
            return
        seqs, self._done = self._done, []
        try:
            await self._store.finish(self._plan.name, seqs)
        except BaseException:
            self._done = seqs + self._done
            raise
        self._known.difference_update(seqs)
