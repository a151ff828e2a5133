"""One applied manifest set: its resources by key, and what their references resolve to.

The control plane builds a :class:`Declared` on every successful apply and never changes it
afterwards. Whatever is computed from it later (a subscription plan when a worker starts, a
status when it is viewed) therefore comes out exactly as it would have during that apply, even
while the next apply is under way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker.delivery.spec import DeliverySpec
from weir.keyed import KeyTable
from weir.manifests import Broker, Resource, Trigger
from weir.manifests.resolve import (
    ResolveContext,
    UnresolvedDestination,
    delivery_spec,
    effective_delivery,
    resolve,
)
from weir.sinks import SinkRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Where a Trigger's events go, each part resolved or the reason it is not."""

    broker: Broker | None
    """Its Broker, ``None`` when the Broker is not declared."""
    subscriber: str | UnresolvedDestination
    delivery: DeliverySpec | UnresolvedDestination
    """From :func:`~weir.manifests.resolve.effective_delivery`; fails when its dead-letter
    sink does not resolve."""


class Declared:
    """The resources of one apply (``resources``, not to be changed) and a
    :class:`ResolveContext` (``ctx``) that resolves against them alone."""

    __slots__ = ("_base_url", "_sinks", "ctx", "resources")

    def __init__(
        self,
        resources: KeyTable[Resource],
        *,
        base_url: str,
        sinks: SinkRegistry,
        service_map: Mapping[tuple[str, str], str],
    ) -> None:
        self.resources = resources
        self._base_url = base_url.rstrip("/")
        # Only the registry's addresses are used: which sinks exist is read from ``resources``,
        # as the registry's contents belong to the latest apply.
        self._sinks = sinks
        self.ctx = ResolveContext(broker_url=self.broker_url, sink_url=self.sink_url, service_map=service_map)

    def broker_url(self, namespace: str, name: str) -> str | None:
        """The ingress URL of Broker ``namespace/name``, ``None`` when it is not declared."""
        if ("Broker", namespace, name) not in self.resources:
            return None
        return f"{self._base_url}/{namespace}/{name}"

    def sink_url(self, namespace: str, name: str) -> str | None:
        """The URL of IntegrationSink ``namespace/name``, ``None`` when it is not declared."""
        if ("IntegrationSink", namespace, name) not in self.resources:
            return None
        return self._sinks.address(namespace, name)

    def targets(self, trigger: Trigger) -> Targets:
        """``trigger``'s Broker, subscriber URL and delivery settings, as resolved here."""
        found = self.resources.get(("Broker", trigger.namespace, trigger.broker))
        broker = found if isinstance(found, Broker) else None
        subscriber: str | UnresolvedDestination
        delivery: DeliverySpec | UnresolvedDestination
        try:
            subscriber = resolve(trigger.subscriber, namespace=trigger.namespace, ctx=self.ctx)
        except UnresolvedDestination as exc:
            subscriber = exc
        options = effective_delivery(trigger, broker)
        try:
            delivery = delivery_spec(options, namespace=trigger.namespace, ctx=self.ctx)
        except UnresolvedDestination as exc:
            delivery = exc
        return Targets(broker=broker, subscriber=subscriber, delivery=delivery)
