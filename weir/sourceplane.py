"""Sources in the control plane: resolve each source's sink, run it, report its status.

Each declared source gets an emitter bound to its resolved sink. When the sink never accepts an
event, the event is kept: in the target Broker's dead-letter record (``weir deadletters``) when the
sink is a Broker of this Weir, and always in the log with its full content. A source whose sink
cannot be resolved does not run and says why in its status; a ``SinkBinding`` is loaded but only
ever reports that it needs Kubernetes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from broker.delivery.sender import Sender
from broker.delivery.spec import DeliverySpec
from broker.errors import DeliveryError, StoreError
from broker.event import Event
from broker.store.base import DeadLetter, EventStore
from sources.base import Emitter, SourceStatus
from sources.emitter import SOURCE_DEFAULT_DELIVERY, Fallback, SinkEmitter, log_fallback
from sources.manager import SourceManager, SourcePlan
from weir.manifests import Resource
from weir.manifests.resolve import ResolveContext, UnresolvedDestination, resolve
from weir.manifests.source_model import (
    SINK_BINDING_STATUS,
    ContainerSource,
    PingSource,
    SinkBinding,
    SourceResource,
)

log = logging.getLogger("weir.sources")

Key = tuple[str, str, str]
PlanBuilder = Callable[[SourceResource, str], SourcePlan | None]


class SourcePlane:
    """Runs the declared sources; see the module docstring."""

    def __init__(
        self,
        *,
        sender: Sender,
        store: EventStore,
        state_dir: Path,
        environ: Mapping[str, str],
        builders: Mapping[type[SourceResource], PlanBuilder] | None = None,
    ) -> None:
        self._sender = sender
        self._store = store
        self._state_dir = state_dir
        self._environ = dict(environ)
        self._builders: dict[type[SourceResource], PlanBuilder] = {
            PingSource: lambda r, url: (
                r.plan(sink_uri=url, state_dir=state_dir) if isinstance(r, PingSource) else None
            ),
            ContainerSource: lambda r, url: (
                r.plan(sink_uri=url, base_env=self._environ) if isinstance(r, ContainerSource) else None
            ),
            **(builders or {}),
        }
        self._manager = SourceManager(emitter_for=self._emitter_for)
        self._resources: dict[Key, SourceResource] = {}
        self._sink_uris: dict[Key, str] = {}
        self._fixed: dict[Key, SourceStatus] = {}

    @staticmethod
    def is_source(resource: Resource) -> bool:
        return isinstance(resource, SourceResource)

    async def apply(self, resources: Iterable[Resource], ctx: ResolveContext) -> None:
        """Make the declared sources the running ones (start new, restart changed, stop removed)."""
        declared = {r.key: r for r in resources if isinstance(r, SourceResource)}
        plans: dict[Key, SourcePlan] = {}
        fixed: dict[Key, SourceStatus] = {}
        sink_uris: dict[Key, str] = {}
        for key, resource in declared.items():
            try:
                url = resolve(resource.sink, namespace=resource.namespace, ctx=ctx)
            except UnresolvedDestination as exc:
                fixed[key] = SourceStatus(ready=False, reason="SinkNotFound", message=str(exc))
                continue
            sink_uris[key] = url
            if isinstance(resource, SinkBinding):
                fixed[key] = SINK_BINDING_STATUS
                continue
            builder = self._builders.get(type(resource))
            plan = builder(resource, url) if builder is not None else None
            if plan is None:
                fixed[key] = SourceStatus(
                    ready=False, reason="NotSupported", message=f"{resource.kind} cannot run"
                )
                continue
            plans[key] = plan
        self._resources, self._sink_uris, self._fixed = declared, sink_uris, fixed
        await self._manager.apply(plans)

    def status(self, key: Key) -> dict[str, Any]:
        """Knative-shaped status of a source: ``sinkUri`` and a ``Ready`` condition."""
        state = self._fixed.get(key) or self._manager.status(key)
        out: dict[str, Any] = {}
        if key in self._sink_uris:
            out["sinkUri"] = self._sink_uris[key]
        if state is None:
            out["conditions"] = [{"type": "Ready", "status": "Unknown", "reason": "Starting"}]
            return out
        condition = {"type": "Ready", "status": "True" if state.ready else "False"}
        if state.reason:
            condition["reason"] = state.reason
        if state.message:
            condition["message"] = state.message
        out["conditions"] = [condition]
        out.update(state.extra)
        return out

    async def stop(self) -> None:
        await self._manager.stop()

    def _emitter_for(self, plan: SourcePlan) -> Emitter:
        resource = self._resources[plan.key]
        delivery = getattr(resource, "delivery_spec", None)
        return SinkEmitter(
            sender=self._sender,
            url=plan.sink_uri,
            delivery=delivery if isinstance(delivery, DeliverySpec) else SOURCE_DEFAULT_DELIVERY,
            overrides=dict(resource.ce_overrides),
            fallback=self._fallback(resource),
        )

    def _fallback(self, resource: SourceResource) -> Fallback:
        logged = log_fallback(log)
        ref = resource.sink.ref
        if ref is None or ref.kind != "Broker" or resource.sink.uri:
            return logged
        broker_log = f"{ref.namespace or resource.namespace}/{ref.name}"
        name = f"{resource.kind}:{resource.namespace}/{resource.name}"
        store = self._store

        async def record(event: Event, error: DeliveryError) -> None:
            await logged(event, error)
            try:
                await store.dead_letter(
                    DeadLetter(
                        log=broker_log,
                        subscription=name,
                        seq=0,
                        event=event,
                        reason=f"source could not deliver to its Broker: {error}",
                        attempts=0,
                        status=error.status,
                        dead_at=time.time(),
                    )
                )
            except StoreError as exc:
                log.error("could not record %s's undelivered event %s: %s", name, event.id, exc)

        return record
