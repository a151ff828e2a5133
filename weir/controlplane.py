"""The control plane: turns loaded manifests into running Brokers, Triggers and sinks.

``apply`` is all-or-nothing: a set of manifests with any problem (invalid field, changed immutable
field) changes nothing and returns the problems, so a bad edit never takes down a running mesh.
A valid set replaces the desired state; each Trigger then becomes Ready or reports why not (its
Broker is missing, its subscriber or dead-letter sink cannot be resolved) in Knative-shaped status,
and only Ready Triggers receive events.

Each apply's resources and what they resolve to are a :class:`~weir.declared.Declared`; statuses
(:mod:`weir.status`) and subscription plans (:mod:`weir.plans`) are computed from it when read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from broker.delivery.dispatcher import Dispatcher
from broker.routing import BrokerPlan
from triggers.filters import compile_trigger_filter
from triggers.index import IndexBuilder
from weir.declared import Declared
from weir.keyed import Key, KeyTable
from weir.manifests import Broker, IntegrationSink, LoadResult, Resource, Trigger, check_immutable
from weir.manifests.frozen import thaw
from weir.plans import SubscriptionPlans
from weir.sinks import LogSink, SinkRegistry
from weir.sourceplane import SourcePlane
from weir.status import Statuses

log = logging.getLogger("weir.controlplane")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ControlPlane:
    """Desired state (manifests), observed state (status), and the plans the dispatcher runs."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        sinks: SinkRegistry,
        base_url: str,
        service_map: Mapping[tuple[str, str], str] | None = None,
        sources: SourcePlane | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._sources = sources
        self._sinks = sinks
        self._base_url = base_url.rstrip("/")
        self._service_map = dict(service_map or {})
        self._declared = self._declare(KeyTable())
        self._status = Statuses(self._declared, previous=None, now=_now())
        self._status.done()

    def _declare(self, resources: KeyTable[Resource]) -> Declared:
        return Declared(resources, base_url=self._base_url, sinks=self._sinks, service_map=self._service_map)

    @property
    def _resources(self) -> KeyTable[Resource]:
        return self._declared.resources

    # -- BrokerDirectory (used by ingress) -------------------------------------------------------

    def log_for(self, namespace: str, name: str) -> str | None:
        """The log of Broker ``namespace/name``, or ``None`` when no such Broker is declared."""
        return f"{namespace}/{name}" if ("Broker", namespace, name) in self._resources else None

    def broker_url(self, namespace: str, name: str) -> str | None:
        return self._declared.broker_url(namespace, name)

    # -- reconcile ---------------------------------------------------------------------------

    async def apply(self, result: LoadResult) -> list[str]:
        """Make ``result`` the desired state. Returns problems; with any problem nothing changes."""
        problems = list(result.problems)
        if not problems:
            for resource in result.resources:
                old = self._resources.get(resource.key)
                if old is not None:
                    problems.extend(check_immutable(old, resource))
        if problems:
            return problems

        resources: KeyTable[Resource] = KeyTable()
        declared: list[Resource] = []  # in load order, which the table does not keep
        for resource in result.resources:
            old = self._resources.get(resource.key)
            generation = 1
            if old is not None:
                same = old.spec == resource.spec and old.annotations == resource.annotations
                generation = old.generation if same else old.generation + 1
            if generation != resource.generation:
                resource = dataclasses.replace(resource, generation=generation)
            resources[resource.key] = resource
            declared.append(resource)
        self._declared = state = self._declare(resources)

        self._sinks.replace(
            {
                (r.namespace, r.name): LogSink(namespace=r.namespace, name=r.name, options=r.log)
                for r in declared
                if isinstance(r, IntegrationSink)
            }
        )
        plans: dict[str, SubscriptionPlans] = {}
        # Filed as compiled, so a filter the index does not keep is freed at once.
        indexes: dict[str, IndexBuilder] = {}
        # Each status is recorded as soon as it is observed: held as dicts until every Trigger
        # had one, 10,000 statuses left about 3 MiB of freed blocks among the objects kept.
        statuses = Statuses(state, previous=self._status, now=_now())
        for resource in declared:
            if not isinstance(resource, Trigger):
                statuses.record(resource)
                if isinstance(resource, Broker):
                    plans.setdefault(f"{resource.namespace}/{resource.name}", SubscriptionPlans(state))
        for resource in declared:
            if isinstance(resource, Trigger):
                name = f"{resource.namespace}/{resource.name}"
                flt = compile_trigger_filter(resource.filter_, resource.filters, trigger=name)
                if statuses.record(resource):  # only Ready Triggers receive events
                    log_name = f"{resource.namespace}/{resource.broker}"
                    plans[log_name].add(name, resource)
                    indexes.setdefault(log_name, IndexBuilder()).add(name, flt)
        statuses.done()
        self._status = statuses

        await self._dispatcher.apply(
            {
                log_name: BrokerPlan(
                    log=log_name, matcher=indexes.get(log_name, IndexBuilder()).build(), subscriptions=subs
                )
                for log_name, subs in plans.items()
            }
        )
        if self._sources is not None:
            await self._sources.apply(declared, state.ctx)
        return []

    # -- views for the admin API -------------------------------------------------------------

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Knative-shaped objects of ``kind`` (in ``namespace``, or all), sorted by namespace/name."""
        return list(self.iter_objects(kind, namespace))

    def iter_objects(self, kind: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`objects`, each built only when reached: a listing can then encode and drop them
        a few at a time rather than hold every view at once."""
        for key in self._resources.sorted_keys(kind, namespace):
            obj = self.object(key)
            if obj is not None:
                yield obj

    def object(self, key: Key) -> dict[str, Any] | None:
        resource = self._resources.get(key)
        if resource is None:
            return None
        metadata: dict[str, Any] = {
            "name": resource.name,
            "namespace": resource.namespace,
            "generation": resource.generation,
        }
        if resource.annotations:
            metadata["annotations"] = dict(resource.annotations)
        if resource.labels:
            metadata["labels"] = dict(resource.labels)
        status = self._status.view(key)
        if self._sources is not None and SourcePlane.is_source(resource):
            # Sources change state on their own (a process crashes, a tick fails): read it live.
            status = {"observedGeneration": resource.generation, **self._sources.status(key)}
        return {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata,
            "spec": thaw(resource.spec),
            "status": status,
        }

    def source_objects(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every source (any kind), Knative-shaped, sorted by namespace/name/kind."""
        keys = sorted(
            (k for k, r in self._resources.items()
             if SourcePlane.is_source(r) and (namespace is None or k[1] == namespace)),
            key=lambda k: (k[1], k[2], k[0]),
        )
        return [obj for obj in map(self.object, keys) if obj is not None]

