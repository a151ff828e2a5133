"""The control plane: turns loaded manifests into running Brokers, Triggers and sinks.

``apply`` is all-or-nothing: a set of manifests with any problem (invalid field, changed immutable
field) changes nothing and returns the problems, so a bad edit never takes down a running mesh.
A valid set replaces the desired state; each Trigger then becomes Ready or reports why not (its
Broker is missing, its subscriber or dead-letter sink cannot be resolved) in Knative-shaped status,
and only Ready Triggers receive events.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.delivery.dispatcher import Dispatcher
from broker.routing import DEFAULT_MAX_IN_FLIGHT, BrokerPlan, SubscriptionPlan
from triggers.filters import compile_trigger_filter
from triggers.filters.base import Filter
from triggers.index import TriggerIndex
from weir.manifests import Broker, IntegrationSink, LoadResult, Resource, Trigger, check_immutable
from weir.manifests.frozen import thaw
from weir.manifests.resolve import (
    ResolveContext,
    UnresolvedDestination,
    delivery_spec,
    effective_delivery,
    resolve,
)
from weir.sinks import LogSink, SinkRegistry
from weir.sourceplane import SourcePlane

log = logging.getLogger("weir.controlplane")

Key = tuple[str, str, str]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


Condition = tuple[str, str, str, str]
"""``(type, status, reason, message)`` of a condition being computed; empty ones are left out of
the status view. Tuples rather than dicts: an apply computes several per Trigger and keeps none."""


_CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Condition:
    return (kind, "True" if ok else "False", reason, message)


_Packed = tuple[Any, ...]
"""A status object as its (shared) key tuple followed by its values, ``conditions`` as a shared
tuple. As dicts (object, key table, conditions list) statuses cost about 270 bytes per Trigger."""


def _unpack(packed: _Packed | None) -> dict[str, Any]:
    """A new status dict from its packed form (``{}`` for ``None``)."""
    if packed is None:
        return {}
    st = dict(zip(packed[0], packed[1:], strict=True))
    st["conditions"] = list(st["conditions"])
    return st


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
        self._resources: dict[Key, Resource] = {}
        self._status: dict[Key, _Packed] = {}

    # -- BrokerDirectory (used by ingress) -------------------------------------------------------

    def log_for(self, namespace: str, name: str) -> str | None:
        """The log of Broker ``namespace/name``, or ``None`` when no such Broker is declared."""
        return f"{namespace}/{name}" if ("Broker", namespace, name) in self._resources else None

    def broker_url(self, namespace: str, name: str) -> str | None:
        if ("Broker", namespace, name) not in self._resources:
            return None
        return f"{self._base_url}/{namespace}/{name}"

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

        resources: dict[Key, Resource] = {}
        for resource in result.resources:
            old = self._resources.get(resource.key)
            generation = 1
            if old is not None:
                same = old.spec == resource.spec and old.annotations == resource.annotations
                generation = old.generation if same else old.generation + 1
            if generation != resource.generation:
                resource = dataclasses.replace(resource, generation=generation)
            resources[resource.key] = resource
        self._resources = resources

        self._sinks.replace(
            {
                (r.namespace, r.name): LogSink(namespace=r.namespace, name=r.name, options=r.log)
                for r in resources.values()
                if isinstance(r, IntegrationSink)
            }
        )
        ctx = ResolveContext(
            broker_url=self.broker_url, sink_url=self._sinks.url_for, service_map=self._service_map
        )
        plans: dict[str, dict[str, SubscriptionPlan]] = {}
        filters: dict[str, dict[str, Filter]] = {}
        status: dict[Key, dict[str, Any]] = {}
        for key, resource in resources.items():
            if isinstance(resource, Broker):
                status[key] = self._broker_status(resource, ctx)
                plans.setdefault(f"{resource.namespace}/{resource.name}", {})
            elif isinstance(resource, IntegrationSink):
                url = self._sinks.url_for(resource.namespace, resource.name)
                status[key] = {"address": {"url": url}, "conditions": [_condition("Ready", True)]}
        for key, resource in resources.items():
            if isinstance(resource, Trigger):
                plan, flt, status[key] = self._trigger(resource, ctx)
                if plan is not None and flt is not None:
                    log_name = f"{resource.namespace}/{resource.broker}"
                    plans[log_name][plan.name] = plan
                    filters.setdefault(log_name, {})[plan.name] = flt
        now = _now()
        # What equal statuses share, for this apply (its keys of different shapes never collide).
        shared: dict[Any, Any] = {}
        packed: dict[Key, _Packed] = {}
        for key, st in status.items():
            st["conditions"] = self._stamped(key, st["conditions"], now, shared)
            st["observedGeneration"] = resources[key].generation
            keys = tuple(st)
            packed[key] = (shared.setdefault(keys, keys), *st.values())
        self._status = packed

        await self._dispatcher.apply(
            {
                log_name: BrokerPlan(
                    log=log_name, matcher=TriggerIndex(filters.get(log_name, {})), subscriptions=subs
                )
                for log_name, subs in plans.items()
            }
        )
        if self._sources is not None:
            await self._sources.apply(resources.values(), ctx)
        return []

    def _broker_status(self, broker: Broker, ctx: ResolveContext) -> dict[str, Any]:
        url = f"{self._base_url}/{broker.namespace}/{broker.name}"
        conditions = [_condition("IngressReady", True), _condition("Addressable", True)]
        st: dict[str, Any] = {"address": {"url": url}}
        dls = broker.delivery.dead_letter_sink if broker.delivery else None
        if dls is not None:
            try:
                st["deadLetterSinkUri"] = resolve(dls, namespace=broker.namespace, ctx=ctx)
                conditions.append(_condition("DeadLetterSinkResolved", True))
            except UnresolvedDestination as exc:
                conditions.append(_condition("DeadLetterSinkResolved", False, "Unresolved", str(exc)))
        conditions.insert(0, _ready(conditions))
        st["conditions"] = conditions
        return st

    def _trigger(
        self, trigger: Trigger, ctx: ResolveContext
    ) -> tuple[SubscriptionPlan | None, Filter | None, dict[str, Any]]:
        st: dict[str, Any] = {}
        conditions: list[Condition] = []
        broker = self._resources.get(("Broker", trigger.namespace, trigger.broker))
        if isinstance(broker, Broker):
            conditions.append(_condition("BrokerReady", True))
        else:
            missing = f"Broker {trigger.namespace}/{trigger.broker} does not exist"
            conditions.append(_condition("BrokerReady", False, "BrokerDoesNotExist", missing))
        subscriber: str | None = None
        try:
            subscriber = resolve(trigger.subscriber, namespace=trigger.namespace, ctx=ctx)
            st["subscriberUri"] = subscriber
            conditions.append(_condition("SubscriberResolved", True))
        except UnresolvedDestination as exc:
            conditions.append(_condition("SubscriberResolved", False, "Unresolved", str(exc)))
        options = effective_delivery(trigger, broker if isinstance(broker, Broker) else None)
        spec = None
        try:
            spec = delivery_spec(options, namespace=trigger.namespace, ctx=ctx)
            if spec.dead_letter_sink:
                st["deadLetterSinkUri"] = spec.dead_letter_sink
            conditions.append(_condition("DeadLetterSinkResolved", True))
        except UnresolvedDestination as exc:
            conditions.append(_condition("DeadLetterSinkResolved", False, "Unresolved", str(exc)))
        name = f"{trigger.namespace}/{trigger.name}"
        flt = compile_trigger_filter(trigger.filter_, trigger.filters, trigger=name)
        conditions.insert(0, _ready(conditions))
        st["conditions"] = conditions
        if conditions[0][1] != "True" or subscriber is None or spec is None:
            return None, None, st
        plan = SubscriptionPlan(
            name=name,
            namespace=trigger.namespace,
            subscriber=subscriber,
            delivery=spec,
            ordered=trigger.ordered,
            max_in_flight=trigger.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        )
        return plan, flt, st

    def _stamped(
        self, key: Key, conditions: list[Condition], now: str, shared: dict[Any, Any]
    ) -> tuple[dict[str, str], ...]:
        """``conditions`` as status dicts whose ``lastTransitionTime`` is kept from the previous
        status unless the condition's status changed (else ``now``).

        Equal conditions are one dict and equal lists one tuple, through ``shared``: 10,000
        healthy Triggers hold the same four. They are never changed in place.
        """
        previous = self._status.get(key)
        old = previous[1 + previous[0].index("conditions")] if previous else ()
        before = {c["type"]: c for c in old}
        stamped: list[dict[str, str]] = []
        for condition in conditions:
            prev = before.get(condition[0])
            since = prev["lastTransitionTime"] if prev and prev["status"] == condition[1] else now
            view = shared.get((condition, since))
            if view is None:  # an empty reason or message is left out
                view = {k: v for k, v in zip(_CONDITION_KEYS, (*condition, since), strict=True) if v}
                shared[(condition, since)] = view
            stamped.append(view)
        result = tuple(stamped)
        # Keyed by identity: the dicts live in ``shared`` for the whole apply.
        same: tuple[dict[str, str], ...] = shared.setdefault(tuple(map(id, result)), result)
        return same

    # -- views for the admin API -------------------------------------------------------------

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Knative-shaped objects of ``kind`` (in ``namespace``, or all), sorted by namespace/name."""
        found = [
            self.object(key)
            for key in sorted(self._resources)
            if key[0] == kind and (namespace is None or key[1] == namespace)
        ]
        return [obj for obj in found if obj is not None]

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
        status = _unpack(self._status.get(key))
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
            (k for k, r in self._resources.items() if SourcePlane.is_source(r)),
            key=lambda k: (k[1], k[2], k[0]),
        )
        found = [self.object(k) for k in keys if namespace is None or k[1] == namespace]
        return [obj for obj in found if obj is not None]


def _ready(conditions: list[Condition]) -> Condition:
    """The ``Ready`` condition: True when every other condition is, else the first failing one's reason."""
    failing = next((c for c in conditions if c[1] != "True"), None)
    if failing is None:
        return _condition("Ready", True)
    return _condition("Ready", False, failing[2] or "NotReady", failing[3])
