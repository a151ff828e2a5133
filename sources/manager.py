"""Runs the declared sources: starts new ones, restarts changed ones, stops removed ones.

The control plane turns each source resource into a :class:`SourcePlan` and hands the whole set
to :meth:`SourceManager.apply` after every successful manifest apply. A plan whose ``spec`` (the
source's frozen config) or ``sink_uri`` differs from the running one restarts the source with a
fresh emitter; an identical plan leaves it running untouched. Starting a source that fails is
not fatal: its :meth:`SourceManager.status` reports ``Ready=False`` with reason ``StartFailed``
and the next apply with a changed plan tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from sources.base import Emitter, Source, SourceStatus

log = logging.getLogger("weir.sources")

Key = tuple[str, str, str]
"""``(kind, namespace, name)`` of a source resource."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcePlan:
    """One source as it should run."""

    key: Key
    spec: Hashable
    """The source's frozen config dataclass; a changed spec restarts the source."""
    sink_uri: str
    """The resolved sink URL (``status.sinkUri``); a changed URL restarts the source too."""
    build: Callable[[Emitter], Source]
    """Makes the (not yet started) source from the emitter bound to this plan's sink."""


@dataclass(slots=True)
class _Running:
    plan: SourcePlan
    source: Source | None
    """``None`` when building or starting it failed (``failure`` says why)."""
    failure: str = ""


class SourceManager:
    """Owns the running sources. ``emitter_for(plan)`` makes the emitter a plan's source uses."""

    def __init__(self, *, emitter_for: Callable[[SourcePlan], Emitter]) -> None:
        self._emitter_for = emitter_for
        self._running: dict[Key, _Running] = {}
        self._lock = asyncio.Lock()

    async def apply(self, plans: Mapping[Key, SourcePlan]) -> None:
        """Make the running sources match ``plans``: stop removed and changed sources (in
        parallel), then start new and changed ones (in parallel). Returns once all have
        started or failed to start."""
        async with self._lock:
            stale = [
                key
                for key, running in self._running.items()
                if key not in plans or not _same(running.plan, plans[key])
            ]
            await asyncio.gather(*(self._stop_one(key) for key in stale))
            fresh = [plan for key, plan in plans.items() if key not in self._running]
            started = await asyncio.gather(*(self._start_one(plan) for plan in fresh))
            for running in started:
                self._running[running.plan.key] = running

    def status(self, key: Key) -> SourceStatus | None:
        """The source's current status, or ``None`` when no source with ``key`` is managed."""
        running = self._running.get(key)
        if running is None:
            return None
        if running.source is None:
            return SourceStatus(ready=False, reason="StartFailed", message=running.failure)
        return running.source.status()

    def keys(self) -> list[Key]:
        """The keys of every managed source, running or failed."""
        return list(self._running)

    async def stop(self) -> None:
        """Stop every source (in parallel) and forget them."""
        async with self._lock:
            await asyncio.gather(*(self._stop_one(key) for key in list(self._running)))

    async def _start_one(self, plan: SourcePlan) -> _Running:
        name = "/".join(plan.key)
        try:
            source = plan.build(self._emitter_for(plan))
            await source.start()
        except Exception as exc:
            # One broken source must not keep the others from starting.
            log.exception("source %s failed to start", name)
            return _Running(plan=plan, source=None, failure=f"{type(exc).__name__}: {exc}")
        log.info("source %s started, sink %s", name, plan.sink_uri)
        return _Running(plan=plan, source=source)

    async def _stop_one(self, key: Key) -> None:
        running = self._running.pop(key)
        if running.source is None:
            return
        try:
            await running.source.stop()
        except Exception:
            log.exception("source %s failed to stop cleanly", "/".join(key))
        else:
            log.info("source %s stopped", "/".join(key))


def _same(a: SourcePlan, b: SourcePlan) -> bool:
    # ``build`` is a fresh closure on every apply; the plan's identity is its spec and sink.
    return a.spec == b.spec and a.sink_uri == b.sink_uri
