"""Sources in the control plane: resolve each source's sink, run it, report its status.

Each declared source gets an emitter bound to its resolved sink. When the sink never accepts an
event, the event is kept: in the target Broker's dead-letter record (``weir deadletters``) when the
sink is a Broker of this Weir, and always in the log with its full content. A source whose sink
cannot be resolved does not run and says why in its status; a ``SinkBinding`` is loaded but only
ever reports that it needs Kubernetes.

With several dispatcher replicas on a shared store, sources that must run once (PingSource,
ContainerSource) run only in the replica holding the store's lease on :data:`SOURCES_LEASE`;
the others report ``Standby`` and take over within a few seconds when that replica goes away.
Webhook sources and KafkaSource (a consumer group) run in every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from sources.webhooks import WebhookRouter
from weir.manifests import Resource
from weir.manifests.resolve import ResolveContext, UnresolvedDestination, resolve
from weir.manifests.source_kinds_http import GitHubSource, GitLabSource, WebhookSource
from weir.manifests.source_kinds_kafka import KafkaSource
from weir.manifests.source_model import (
    SINK_BINDING_STATUS,
    ContainerSource,
    PingSource,
    SinkBinding,
    SourceResource,
)
from weir.secrets import SecretResolver

log = logging.getLogger("weir.sources")

Key = tuple[str, str, str]

SOURCES_LEASE = "weir-system/sources"
"""The lease (see :meth:`EventStore.lease`) whose holder runs the run-once sources."""
LEASE_CHECK = 1.0
"""Seconds between checks of the sources lease."""
_RUN_ONCE = (PingSource, ContainerSource)
STANDBY = SourceStatus(ready=False, reason="Standby",
                       message="runs in the dispatcher replica that holds the sources lease")


class SourcePlane:
    """Runs the declared sources; see the module docstring."""

    def __init__(
        self,
        *,
        sender: Sender,
        store: EventStore,
        state_dir: Path,
        environ: Mapping[str, str],
        webhooks: WebhookRouter,
        secrets: SecretResolver,
        lease: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``lease``: when set (a store shared by replicas), run-once sources run only while it
        answers ``True``."""
        self._sender = sender
        self._store = store
        self._state_dir = state_dir
        self._environ = dict(environ)
        self._webhooks = webhooks
        self._secrets = secrets
        self._manager = SourceManager(emitter_for=self._emitter_for)
        self._resources: dict[Key, SourceResource] = {}
        self._sink_uris: dict[Key, str] = {}
        self._fixed: dict[Key, SourceStatus] = {}
        self._plans: dict[Key, SourcePlan] = {}
        self._lease = lease
        self._leader = lease is None
        self._watcher: asyncio.Task[None] | None = None

    @staticmethod
    def is_source(resource: Resource) -> bool:
        return isinstance(resource, SourceResource)

    def _plan(self, resource: SourceResource, url: str, ctx: ResolveContext) -> SourcePlan | None:
        if isinstance(resource, PingSource):
            return resource.plan(sink_uri=url, state_dir=self._state_dir)
        if isinstance(resource, ContainerSource):
            return resource.plan(sink_uri=url, base_env=self._environ)
        if isinstance(resource, GitHubSource | GitLabSource | WebhookSource):
            return resource.plan(sink_uri=url, router=self._webhooks, secrets=self._secrets)
        if isinstance(resource, KafkaSource):
            return resource.plan(sink_uri=url, ctx=ctx)
        return None

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
            try:
                plan = self._plan(resource, url, ctx)
            except UnresolvedDestination as exc:  # e.g. a KafkaSource's dead-letter sink
                fixed[key] = SourceStatus(ready=False, reason="DeadLetterSinkNotFound", message=str(exc))
                continue
            if plan is None:
                fixed[key] = SourceStatus(
                    ready=False, reason="NotSupported", message=f"{resource.kind} cannot run"
                )
                continue
            plans[key] = plan
        self._resources, self._sink_uris, self._fixed, self._plans = declared, sink_uris, fixed, plans
        # Only a replica with run-once sources asks for the lease: on Kafka a first lease request
        # rebalances the store's router group, pausing routing for a group join.
        if self._lease is not None and self._watcher is None and any(map(self._run_once, plans)):
            self._watcher = asyncio.create_task(self._watch_lease(self._lease), name="weir-sources-lease")
        await self._run()

    async def _run(self) -> None:
        if self._leader:
            await self._manager.apply(self._plans)
            return
        await self._manager.apply({k: p for k, p in self._plans.items() if not self._run_once(k)})

    def _run_once(self, key: Key) -> bool:
        return isinstance(self._resources.get(key), _RUN_ONCE)

    async def _watch_lease(self, lease: Callable[[], Awaitable[bool]]) -> None:
        while True:
            try:
                leader = await lease()
            except StoreError as exc:
                log.warning("cannot check the sources lease: %s", exc)
                leader = False
            if leader != self._leader:
                self._leader = leader
                log.info("run-once sources %s in this replica", "start" if leader else "stop")
                await self._run()
            await asyncio.sleep(LEASE_CHECK)

    def status(self, key: Key) -> dict[str, Any]:
        """Knative-shaped status of a source: ``sinkUri`` and a ``Ready`` condition."""
        state = self._fixed.get(key) or self._manager.status(key)
        if state is None and not self._leader and key in self._plans and self._run_once(key):
            state = STANDBY
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
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._manager.stop()

    def _emitter_for(self, plan: SourcePlan) -> Emitter:
        resource = self._resources[plan.key]
        delivery = getattr(plan.spec, "delivery", None)  # KafkaSource carries its own DeliverySpec
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
