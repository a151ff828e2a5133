"""Subscription plans built when read and statuses observed again when viewed.

Neither is kept after an apply; each must come out exactly as the apply resolved it (the values
here are what the control plane stored before it stopped keeping them), even once a later apply
has changed the sinks and Brokers it resolves against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.delivery.dispatcher import Dispatcher, DispatcherConfig
from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import BROKER_DEFAULT_DELIVERY, DeliverySpec
from broker.ingest import Ingest
from broker.routing import SubscriptionPlan
from broker.store.memory import MemoryStore
from weir.controlplane import ControlPlane
from weir.declared import Declared
from weir.keyed import KeyTable
from weir.manifests import Resource, Trigger, load_text
from weir.manifests.resolve import UnresolvedDestination
from weir.plans import SubscriptionPlans, subscription_plan
from weir.sinks import LocalSender, SinkRegistry
from weir.status import Statuses

BASE = "http://127.0.0.1:1"
SERVICES = {("default", "svc"): "http://svc.example/base"}
DLS = "deadLetterSink: {ref: {apiVersion: sinks.knative.dev/v1alpha1, kind: IntegrationSink, name: dls}}"
SINK_REF = "{ref: {apiVersion: sinks.knative.dev/v1alpha1, kind: IntegrationSink, name: show}}"


def broker(name: str, spec: str = "{}") -> str:
    return f"apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def sink(name: str) -> str:
    return (
        "apiVersion: sinks.knative.dev/v1alpha1\nkind: IntegrationSink\n"
        f"metadata: {{name: {name}}}\nspec: {{log: {{}}}}\n"
    )


def trigger(name: str, spec: str, annotations: str = "{}") -> str:
    return (
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: {name}, annotations: {annotations}}}\nspec: {spec}\n"
    )


DOCS = [
    broker("default"),
    broker("dl", f"{{delivery: {{retry: 3, backoffPolicy: linear, backoffDelay: PT1S, {DLS}}}}}"),
    sink("show"),
    sink("dls"),
    trigger("a", '{broker: default, subscriber: {uri: "http://127.0.0.1:9/x"}}'),
    trigger("b", f"{{broker: default, subscriber: {SINK_REF}}}"),
    trigger("c", "{broker: dl, subscriber: {ref: {apiVersion: v1, kind: Service, name: svc}, uri: sub/p}}"),
    trigger(
        "f",
        "{broker: default, delivery: {retry: 1, timeout: PT2S, deadLetterSink: {uri: 'http://h/dls'}}, "
        'subscriber: {uri: "http://127.0.0.1:9/x"}}',
        "{kafka.eventing.knative.dev/delivery.order: ordered, weir.dev/max-in-flight: '3'}",
    ),
    trigger(
        "g",
        "{broker: default, delivery: {deadLetterSink: {ref: {apiVersion: v1, kind: Pod, name: p}}}, "
        'subscriber: {uri: "http://127.0.0.1:9/x"}}',
    ),
]

EXPECTED = {
    "a": SubscriptionPlan(
        name="default/a", namespace="default", subscriber="http://127.0.0.1:9/x",
        delivery=BROKER_DEFAULT_DELIVERY,
    ),
    "b": SubscriptionPlan(
        name="default/b", namespace="default", subscriber=f"{BASE}/sinks/default/show",
        delivery=BROKER_DEFAULT_DELIVERY,
    ),
    "c": SubscriptionPlan(
        name="default/c", namespace="default", subscriber="http://svc.example/base/sub/p",
        delivery=DeliverySpec(
            retry=3, backoff_policy="linear", backoff_delay=1.0, dead_letter_sink=f"{BASE}/sinks/default/dls"
        ),
    ),
    "f": SubscriptionPlan(
        name="default/f", namespace="default", subscriber="http://127.0.0.1:9/x",
        delivery=DeliverySpec(retry=1, backoff_delay=0.0, timeout=2.0, dead_letter_sink="http://h/dls"),
        ordered=True, max_in_flight=3,
    ),
}


def declare(docs: list[str], sinks: SinkRegistry) -> Declared:
    result = load_text("---\n".join(docs), file="m.yaml")
    assert result.problems == []
    resources: KeyTable[Resource] = KeyTable()
    for resource in result.resources:
        resources[resource.key] = resource
    return Declared(resources, base_url=BASE, sinks=sinks, service_map=SERVICES)


def triggers(declared: Declared) -> dict[str, Trigger]:
    return {key[2]: r for key, r in declared.resources.items() if isinstance(r, Trigger)}


def test_plans_are_built_on_each_read_as_the_apply_resolved_them() -> None:
    declared = declare(DOCS, SinkRegistry(BASE))
    found = triggers(declared)
    plans = SubscriptionPlans(declared)
    for name in EXPECTED:
        plans.add(f"default/{name}", found[name])
    assert len(plans) == 4 and list(plans) == [f"default/{n}" for n in EXPECTED]
    assert "default/a" in plans and "default/g" not in plans
    assert dict(plans) == {p.name: p for p in EXPECTED.values()}
    assert plans["default/c"] is not plans["default/c"]  # nothing is kept
    with pytest.raises(KeyError):
        plans["default/g"]
    # Not Ready: its dead-letter sink does not resolve, so it has no plan.
    with pytest.raises(UnresolvedDestination):
        subscription_plan("default/g", found["g"], declared)


def test_a_later_apply_changes_nothing_an_earlier_one_resolves() -> None:
    registry = SinkRegistry(BASE)
    first = declare(DOCS, registry)
    plans = SubscriptionPlans(first)
    for name in EXPECTED:
        plans.add(f"default/{name}", triggers(first)[name])
    statuses = Statuses(first, previous=None, now="2026-01-01T00:00:00Z")
    for resource in first.resources.values():
        statuses.record(resource)
    statuses.done()
    before = statuses.view(("Trigger", "default", "b"))
    # The next apply: no sink "show" and no Broker "dl" any more, and the registry follows it.
    second = declare([d for d in DOCS if "name: show" not in d and "name: dl" not in d], registry)
    registry.replace({})
    assert second.sink_url("default", "show") is None and second.broker_url("default", "dl") is None
    assert dict(plans) == {p.name: p for p in EXPECTED.values()}
    assert statuses.view(("Trigger", "default", "b")) == before
    assert before["subscriberUri"] == f"{BASE}/sinks/default/show"


def test_status_of_an_unknown_or_unobserved_resource_is_empty() -> None:
    declared = declare(DOCS, SinkRegistry(BASE))
    statuses = Statuses(declared, previous=None, now="2026-01-01T00:00:00Z")
    statuses.done()
    assert statuses.view(("Trigger", "default", "a")) == {}  # declared, never recorded
    assert statuses.view(("Trigger", "default", "nope")) == {}


@pytest.fixture
async def control(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ControlPlane]:
    monkeypatch.setattr("weir.controlplane._now", lambda: "2026-01-01T00:00:00Z")
    store = MemoryStore()
    await store.open()
    sinks = SinkRegistry(BASE)
    sender = LocalSender(HttpSender(), sinks)
    dispatcher = Dispatcher(store=store, sender=sender, ingest=Ingest(store), config=DispatcherConfig())
    await dispatcher.start()
    try:
        yield ControlPlane(dispatcher=dispatcher, sinks=sinks, base_url=BASE, service_map=SERVICES)
    finally:
        await dispatcher.stop(0.0)
        await sender.close()


def stamped(*kinds: str, failing: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Conditions as viewed on day one: ``Ready`` then ``kinds``, True unless named in
    ``failing`` (type -> message); a failing one makes ``Ready`` repeat its reason and message."""
    failing = failing or {}
    first = next(iter(failing.values()), "")
    out = []
    for kind, message in [("Ready", first), *((k, failing.get(k, "")) for k in kinds)]:
        shown = {"type": kind, "status": "False" if message else "True"}
        if message:
            shown |= {"reason": "Unresolved", "message": message}
        out.append(shown | {"lastTransitionTime": "2026-01-01T00:00:00Z"})
    return out


TRIGGER_CONDITIONS = ("BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved")
POD = (
    "cannot resolve a reference to kind Pod (apiVersion v1): "
    "Weir resolves Brokers, IntegrationSinks and Services"
)


async def test_viewed_statuses_are_what_the_apply_stored(control: ControlPlane) -> None:
    assert await control.apply(load_text("---\n".join(DOCS), file="m.yaml")) == []

    def status(kind: str, name: str) -> dict[str, Any]:
        obj = control.object((kind, "default", name))
        assert obj is not None
        found: dict[str, Any] = obj["status"]
        return found

    assert status("Trigger", "c") == {
        "subscriberUri": "http://svc.example/base/sub/p",
        "deadLetterSinkUri": f"{BASE}/sinks/default/dls",
        "conditions": stamped(*TRIGGER_CONDITIONS),
        "observedGeneration": 1,
    }
    order = ["subscriberUri", "deadLetterSinkUri", "conditions", "observedGeneration"]
    assert list(status("Trigger", "f")) == order
    assert status("Trigger", "g") == {
        "subscriberUri": "http://127.0.0.1:9/x",
        "conditions": stamped(*TRIGGER_CONDITIONS, failing={"DeadLetterSinkResolved": POD}),
        "observedGeneration": 1,
    }
    assert status("Broker", "dl") == {
        "address": {"url": f"{BASE}/default/dl"},
        "deadLetterSinkUri": f"{BASE}/sinks/default/dls",
        "conditions": stamped("IngressReady", "Addressable", "DeadLetterSinkResolved"),
        "observedGeneration": 1,
    }
    assert status("IntegrationSink", "show") == {
        "address": {"url": f"{BASE}/sinks/default/show"},
        "conditions": stamped(),
        "observedGeneration": 1,
    }
    # Each view is built anew: changing one changes no other.
    first = status("Broker", "dl")
    first["address"]["url"] = "changed"
    assert status("Broker", "dl")["address"] == {"url": f"{BASE}/default/dl"}
    # Ready Triggers share their stamped conditions rather than keep their own.
    a, c = control.object(("Trigger", "default", "a")), control.object(("Trigger", "default", "c"))
    assert a is not None and c is not None
    assert all(x is y for x, y in zip(a["status"]["conditions"], c["status"]["conditions"], strict=True))


async def test_plans_handed_to_the_dispatcher_are_the_ready_triggers(control: ControlPlane) -> None:
    assert await control.apply(load_text("---\n".join(DOCS), file="m.yaml")) == []
    desired = control._dispatcher._desired
    assert {log: dict(plan.subscriptions) for log, plan in desired.items()} == {
        "default/default": {p.name: p for k, p in EXPECTED.items() if k != "c"},
        "default/dl": {"default/c": EXPECTED["c"]},
    }
