"""One Broker's router: turns newly accepted events into pending deliveries.

Loop: check :meth:`EventStore.lease` (on a shared store only one dispatcher process routes a
log at a time; the others wait and re-read the cursor once they hold it), :meth:`EventStore.wait`
for entries after the cursor, :meth:`EventStore.read` a batch,
ask the :class:`~broker.routing.Matcher` which subscriptions want each event, record them with
one atomic :meth:`EventStore.route` (which also moves the cursor), then wake the workers of the
subscriptions that got deliveries. Each Trigger is evaluated exactly once per event (reference
§2.C); names the matcher returns that are not in the Broker's plan are ignored, and an event no
subscription wants only moves the cursor. With ``empty_pause`` set, a Broker without
subscriptions moves its cursor at most once per that many seconds. A plan update ends the
pause, and what was accepted during it is routed with the new plan: a Trigger added to a Broker
that had none may get events accepted up to that long before it. Passing them over instead
would also pass over events accepted after the update but before the router resumed.

A plan's ``subscriptions`` may build each subscription's plan on every read (the control plane's
do), so whether a subscription is ordered is read once per plan and remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from broker.errors import StoreError
from broker.routing import BrokerPlan
from broker.store.base import EventStore

log = logging.getLogger(__name__)

WAIT_TIMEOUT = 1.0
"""Seconds one :meth:`EventStore.wait` may block; bounds how long a plan change waits to apply."""
ERROR_PAUSE = 1.0
"""Seconds to pause after a store error before reading again."""
LEASE_POLL = 0.5
"""Seconds between lease checks while another process routes this log."""
IDLE_PAUSE = 0.05
"""Pause when ``wait`` returned early with nothing to read (e.g. a closed store), against spinning."""


class Router:
    """Routes one log; the plan (matcher and subscriptions) can be swapped while it runs."""

    def __init__(
        self,
        *,
        plan: BrokerPlan,
        store: EventStore,
        batch: int,
        notify: Callable[[Iterable[str]], None],
        empty_pause: float = 0.0,
    ) -> None:
        self._plan = plan
        self._store = store
        self._batch = batch
        self._notify = notify
        self._task: asyncio.Task[None] | None = None
        self._empty_pause = empty_pause
        self._updated = asyncio.Event()
        self._ordered: tuple[BrokerPlan, dict[str, bool]] = (plan, {})
        """Whether each subscription routed to under that plan is ordered."""

    def update(self, plan: BrokerPlan) -> None:
        """Use ``plan`` from the next batch on."""
        self._plan = plan
        self._updated.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"weir-router-{self._plan.log}")

    async def stop(self) -> None:
        """Stop routing. A batch being routed is either recorded whole or not at all."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        log_name = self._plan.log
        loop = asyncio.get_running_loop()
        cursor: int | None = None
        while True:
            try:
                if not await self._store.lease(log_name):
                    cursor = None  # the holder moves it; read it again once the lease is ours
                    await asyncio.sleep(LEASE_POLL)
                    continue
                if cursor is None:
                    cursor = await self._store.cursor(log_name)
                started = loop.time()
                await self._store.wait(log_name, cursor, WAIT_TIMEOUT)
                plan = self._plan
                routed = await self._route_batch(cursor, plan)
                if routed is not None and self._empty_pause > 0 and not plan.subscriptions:
                    await self._until_updated(self._empty_pause)
            except StoreError as exc:
                log.warning("router of %s: store error: %s", log_name, exc)
                cursor = None  # re-read: the route may or may not have been recorded
                await asyncio.sleep(min(exc.retry_after, ERROR_PAUSE))
                continue
            except Exception:
                log.exception("router of %s failed; retrying", log_name)
                cursor = None
                await asyncio.sleep(ERROR_PAUSE)
                continue
            if routed is None:
                if loop.time() - started < WAIT_TIMEOUT / 2:
                    await asyncio.sleep(IDLE_PAUSE)
                continue
            cursor = routed

    async def _until_updated(self, timeout: float) -> None:
        self._updated.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._updated.wait(), timeout)

    async def _route_batch(self, cursor: int, plan: BrokerPlan) -> int | None:
        """Route the entries after ``cursor`` with ``plan``; the new cursor, or ``None`` when
        there were none."""
        if not plan.subscriptions:
            # Nothing can match: move the cursor without reading the events back.
            head = await self._store.head(plan.log)
            if head <= cursor:
                return None
            await self._store.route(plan.log, head, [])
            return head
        entries = await self._store.read(plan.log, cursor, self._batch)
        if not entries:
            return None
        wanted = plan.subscriptions
        deliveries: list[tuple[int, str]] = []
        for entry in entries:
            # dict.fromkeys: one delivery per subscription even if the matcher repeats a name.
            for name in dict.fromkeys(plan.matcher.match(entry.event)):
                if name in wanted:
                    deliveries.append((entry.seq, name))
        upto = entries[-1].seq
        names = {name for _, name in deliveries}
        ordered = self._ordered_among(plan, names)
        if names:
            # A store may make deliveries claimable before its route commits (SQLite does): the
            # workers run at the route's first await. The second notice is the one that counts.
            self._notify(names)
        await self._store.route(plan.log, upto, deliveries, ordered=ordered)
        if names:
            self._notify(names)
        return upto

    def _ordered_among(self, plan: BrokerPlan, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that ``plan`` delivers in order (see the module docstring)."""
        known_for, known = self._ordered
        if known_for is not plan:  # keyed by the plan: an update may come during a batch
            known = {}
            self._ordered = (plan, known)
        ordered = []
        for name in names:
            flag = known.get(name)
            if flag is None:
                flag = known[name] = plan.subscriptions[name].ordered
            if flag:
                ordered.append(name)
        return ordered
