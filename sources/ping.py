"""PingSource: a CloudEvent on a cron schedule, shaped exactly as Knative's ``mtping`` adapter.

Each tick emits::

    specversion: 1.0
    type:        dev.knative.sources.ping
    source:      /apis/v1/namespaces/<namespace>/pingsources/<name>
    id:          a fresh UUID v4
    time:        when the tick is sent (RFC 3339, UTC)
    datacontenttype: spec.contentType, only when there is data and a content type
    data:        spec.data as UTF-8, or spec.dataBase64 decoded, byte for byte (Knative's adapter
                 re-encodes JSON data compactly; Weir sends it as written, same JSON value)

plus ``ceOverrides`` (applied by the emitter). Ticks fire at the scheduled instant: Weir does not
add Knative's random 0-499 ms delay, which spreads the load of one adapter serving thousands of
PingSources. Each tick is sent in its own task, so a slow sink never delays the next tick; when
Weir itself falls behind by more than a tick, the missed ticks collapse into one (robfig/cron).

Catch-up (Weir's extension, annotation ``weir.dev/catch-up: "true"``): the instant of the last
tick that finished (accepted by the sink or recorded by the fallback) is kept in
``<state_dir>/pingsource.<namespace>.<name>.json``. On start, the ticks missed since then are
fired first, oldest first, each with its scheduled instant as ``time`` — at most
:data:`CATCH_UP_MAX_TICKS` (the most recent ones) and none older than :data:`CATCH_UP_MAX_AGE`.
A tick in flight when Weir died is fired again (at-least-once). Without the annotation missed
ticks are not replayed, as in Knative.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from broker.bindings.json_format import to_json
from broker.event import Event
from sources.base import Emitter, SourceStatus
from sources.schedule import Schedule, fires, next_fire

log = logging.getLogger("weir.sources.ping")

PING_EVENT_TYPE = "dev.knative.sources.ping"
CATCH_UP_MAX_TICKS = 100
CATCH_UP_MAX_AGE = timedelta(hours=24)
STOP_TIMEOUT = 10.0
"""Seconds :meth:`PingSource.stop` waits for ticks still being delivered before abandoning them."""


def ping_event_source(namespace: str, name: str) -> str:
    """The ``source`` attribute of a PingSource's events."""
    return f"/apis/v1/namespaces/{namespace}/pingsources/{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PingConfig:
    """What one PingSource runs. ``ce_overrides`` is applied by the emitter; it is here so that a
    changed override restarts the source with a new emitter."""

    namespace: str
    name: str
    schedule: Schedule
    content_type: str | None = None
    data: bytes | None = None
    ce_overrides: tuple[tuple[str, str], ...] = ()
    catch_up: bool = False


def ping_event(config: PingConfig, *, at: datetime, event_id: str | None = None) -> Event:
    """The event of one tick, with ``time`` = ``at`` (aware) and a new UUID v4 id unless given."""
    attributes: dict[str, str] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": ping_event_source(config.namespace, config.name),
        "type": PING_EVENT_TYPE,
        "time": rfc3339(at),
    }
    if config.data is not None and config.content_type:
        attributes["datacontenttype"] = config.content_type
    return Event(attributes, config.data)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def missed_ticks(
    schedule: Schedule,
    last: datetime,
    now: datetime,
    *,
    limit: int = CATCH_UP_MAX_TICKS,
    max_age: timedelta = CATCH_UP_MAX_AGE,
) -> list[datetime]:
    """The ticks in ``(max(last, now - max_age), now]``, the latest ``limit`` of them, oldest first."""
    lower = max(last, now - max_age)
    ticks = _window(schedule, lower, now, limit + 1)
    if len(ticks) <= limit:
        return ticks
    # Too many: bisect for the latest lower bound that still leaves ``limit`` ticks (whole seconds,
    # the schedule's resolution), counting at most ``limit + 1`` ticks per probe.
    low, high = lower, now
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if len(_window(schedule, middle, now, limit + 1)) > limit:
            low = middle
        else:
            high = middle
    return _window(schedule, high, now, limit + 1)[-limit:]


def _window(schedule: Schedule, after: datetime, until: datetime, cap: int) -> list[datetime]:
    found: list[datetime] = []
    for tick in islice(fires(schedule, after), cap):
        if tick > until:
            break
        found.append(tick)
    return found


class PingSource:
    """Runs one PingSource; see the module docstring. ``state_dir`` is required for catch-up."""

    def __init__(self, config: PingConfig, *, emitter: Emitter, state_dir: Path | None = None) -> None:
        self._config = config
        self._emitter = emitter
        file = f"pingsource.{config.namespace}.{config.name}.json"
        self._state = None if state_dir is None else state_dir / file
        self._loop_task: asyncio.Task[None] | None = None
        self._ticks: set[asyncio.Task[None]] = set()
        self._in_flight: set[datetime] = set()
        self._finished: list[datetime] = []
        self._last_tick: datetime | None = None
        self._next_tick: datetime | None = None
        self._persisted: datetime | None = None
        self._persist_lock = asyncio.Lock()

    @property
    def _label(self) -> str:
        return f"{self._config.namespace}/{self._config.name}"

    async def start(self) -> None:
        """Begin ticking (after scheduling the catch-up ticks, when enabled)."""
        now = datetime.now(UTC)
        missed: list[datetime] = []
        if self._config.catch_up and self._state is None:
            log.warning("pingsource %s: catch-up needs a state directory; missed ticks are not replayed",
                        self._label)
        if self._config.catch_up and self._state is not None:
            last = await asyncio.to_thread(self._read_state)
            if last is not None:
                missed = missed_ticks(self._config.schedule, last, now)
                if missed:
                    log.info("pingsource %s: catching up %d missed tick(s) since %s", self._label,
                             len(missed), rfc3339(last))
        self._loop_task = asyncio.create_task(self._run(now, missed), name=f"pingsource {self._label}")

    async def stop(self) -> None:
        """Stop ticking; wait up to :data:`STOP_TIMEOUT` s for ticks being delivered."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._ticks:
            _, pending = await asyncio.wait(set(self._ticks), timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def status(self) -> SourceStatus:
        extra: dict[str, str] = {}
        if self._last_tick is not None:
            extra["lastTick"] = rfc3339(self._last_tick)
        if self._next_tick is not None:
            extra["nextTick"] = rfc3339(self._next_tick)
        return SourceStatus(ready=self._loop_task is not None, extra=extra)

    async def _run(self, started: datetime, missed: list[datetime]) -> None:
        if missed:
            # Unfinished until sent, so no regular tick moves the persisted mark past them.
            self._in_flight.update(missed)
            # Oldest first and one at a time, so the sink sees them in schedule order.
            self._spawn(self._catch_up(missed))
        schedule = self._config.schedule
        tick = next_fire(schedule, started)
        while True:
            self._next_tick = tick
            await sleep_until(tick)
            self._spawn(self._fire(tick, ping_event(self._config, at=datetime.now(UTC))))
            # Firing late by more than one tick (a stalled loop, a clock jump) skips ahead.
            tick = next_fire(schedule, max(tick, datetime.now(UTC)))

    async def _catch_up(self, missed: list[datetime]) -> None:
        for tick in missed:
            await self._fire(tick, ping_event(self._config, at=tick), tracked=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._ticks.add(task)
        task.add_done_callback(self._ticks.discard)

    async def _fire(self, tick: datetime, event: Event, *, tracked: bool = False) -> None:
        if not tracked:
            self._in_flight.add(tick)
        try:
            await self._emitter.emit(event)
        except asyncio.CancelledError:
            log.error("pingsource %s: abandoned tick %s on stop; event: %s", self._label, rfc3339(tick),
                      to_json(event).decode())
            raise
        finally:
            self._in_flight.discard(tick)
        self._finished.append(tick)
        if self._last_tick is None or tick > self._last_tick:
            self._last_tick = tick
        await self._persist()

    async def _persist(self) -> None:
        """Record the latest finished tick that no unfinished tick precedes."""
        if self._state is None or not self._config.catch_up:
            return
        floor = min(self._in_flight, default=None)
        done = [t for t in self._finished if floor is None or t < floor]
        if not done:
            return
        mark = max(done)
        self._finished = [t for t in self._finished if t > mark]
        async with self._persist_lock:
            # Ticks finish in any order; the file only ever moves forward.
            if self._persisted is None or mark > self._persisted:
                try:
                    await asyncio.to_thread(self._write_state, mark)
                except OSError as exc:
                    # Ticking goes on; only a later restart may replay more than needed.
                    log.warning("pingsource %s: cannot write %s: %s", self._label, self._state, exc)
                    return
                self._persisted = mark

    def _read_state(self) -> datetime | None:
        assert self._state is not None
        try:
            data = json.loads(self._state.read_text(encoding="utf-8"))
            last = datetime.fromisoformat(data["lastTick"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("pingsource %s: ignoring unreadable state file %s: %s", self._label, self._state, exc)
            return None
        return last if last.tzinfo is not None else last.replace(tzinfo=UTC)

    def _write_state(self, last: datetime) -> None:
        assert self._state is not None
        self._state.parent.mkdir(parents=True, exist_ok=True)
        temp = self._state.with_suffix(".tmp")
        temp.write_text(json.dumps(_state_document(self._config, last)), encoding="utf-8")
        os.replace(temp, self._state)


async def sleep_until(moment: datetime) -> None:
    """Return once the wall clock has reached ``moment`` (asyncio's monotonic timers may fire a
    little early, and the wall clock may be slewed while sleeping, so it is checked again)."""
    while True:
        delay = (moment - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            return
        await asyncio.sleep(delay)


def _state_document(config: PingConfig, last: datetime) -> Mapping[str, str]:
    return {"namespace": config.namespace, "name": config.name, "lastTick": rfc3339(last)}
