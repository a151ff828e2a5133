"""Destination resolution and the delivery settings each Trigger runs with."""

from __future__ import annotations

import textwrap

import pytest

from broker.delivery.spec import BROKER_DEFAULT_DELIVERY, DeliverySpec
from broker.errors import WeirError
from weir.manifests import Broker, DeliveryOptions, Destination, KRef, Trigger, load_text
from weir.manifests.resolve import (
    ResolveContext,
    UnresolvedDestination,
    delivery_spec,
    effective_delivery,
    resolve,
)

BROKERS = {
    ("default", "default"): "http://127.0.0.1:8080/default/default",
    ("shop", "main"): "http://w/shop/main",
}
SINKS = {("default", "display"): "http://127.0.0.1:8080/sinks/default/display"}
CTX = ResolveContext(
    broker_url=lambda ns, name: BROKERS.get((ns, name)),
    sink_url=lambda ns, name: SINKS.get((ns, name)),
    service_map={("default", "mapped"): "http://127.0.0.1:9000/in", ("apps", "dir"): "http://h/x/"},
)


def ref(api_version: str, kind: str, name: str, namespace: str | None = None) -> KRef:
    return KRef(api_version=api_version, kind=kind, name=name, namespace=namespace)


BROKER = "eventing.knative.dev/v1"
SINK = "sinks.knative.dev/v1alpha1"
KSVC = "serving.knative.dev/v1"

RESOLVED = [
    ("absolute uri", Destination(uri="http://127.0.0.1:9/x?y=1"), "http://127.0.0.1:9/x?y=1"),
    ("broker", Destination(ref=ref(BROKER, "Broker", "default")), BROKERS["default", "default"]),
    (
        "broker in other namespace",
        Destination(ref=ref(BROKER, "Broker", "main", "shop")),
        "http://w/shop/main",
    ),
    (
        "integration sink",
        Destination(ref=ref(SINK, "IntegrationSink", "display")),
        SINKS["default", "display"],
    ),
    ("service", Destination(ref=ref("v1", "Service", "svc")), "http://svc.default.svc.cluster.local"),
    (
        "service namespace",
        Destination(ref=ref("v1", "Service", "svc", "apps")),
        "http://svc.apps.svc.cluster.local",
    ),
    ("mapped service", Destination(ref=ref("v1", "Service", "mapped")), "http://127.0.0.1:9000/in"),
    ("knative service", Destination(ref=ref(KSVC, "Service", "ks")), "http://ks.default.svc.cluster.local"),
    ("mapped knative service", Destination(ref=ref(KSVC, "Service", "mapped")), "http://127.0.0.1:9000/in"),
    (
        "ref + absolute path",
        Destination(ref=ref("v1", "Service", "a", "b"), uri="/update"),
        "http://a.b.svc.cluster.local/update",
    ),
    ("ref dir + relative", Destination(ref=ref("v1", "Service", "dir", "apps"), uri="y"), "http://h/x/y"),
    (
        "ref file + relative",
        Destination(ref=ref(BROKER, "Broker", "main", "shop"), uri="replies"),
        "http://w/shop/main/replies",
    ),
    (
        "ref file + absolute path",
        Destination(ref=ref(BROKER, "Broker", "main", "shop"), uri="/other"),
        "http://w/other",
    ),
    (
        "ref + query",
        Destination(ref=ref("v1", "Service", "mapped"), uri="?debug=1"),
        "http://127.0.0.1:9000/in?debug=1",
    ),
    ("ref + dot segments", Destination(ref=ref("v1", "Service", "dir", "apps"), uri="../z"), "http://h/z"),
]


@pytest.mark.parametrize(("dest", "url"), [r[1:] for r in RESOLVED], ids=[r[0] for r in RESOLVED])
def test_resolve(dest: Destination, url: str) -> None:
    assert resolve(dest, namespace="default", ctx=CTX) == url


def test_cluster_domain_is_configurable() -> None:
    ctx = ResolveContext(
        broker_url=CTX.broker_url, sink_url=CTX.sink_url, service_map={}, cluster_domain="corp"
    )
    assert (
        resolve(Destination(ref=ref("v1", "Service", "s")), namespace="n", ctx=ctx) == "http://s.n.svc.corp"
    )


UNRESOLVED = [
    ("missing broker", Destination(ref=ref(BROKER, "Broker", "nope")), "Broker default/nope does not exist"),
    (
        "broker in another namespace",
        Destination(ref=ref(BROKER, "Broker", "default", "shop")),
        "Broker shop/default does not exist",
    ),
    (
        "missing sink",
        Destination(ref=ref(SINK, "IntegrationSink", "gone"), uri="/x"),
        "IntegrationSink default/gone does not exist",
    ),
    (
        "unknown kind",
        Destination(ref=ref("messaging.knative.dev/v1", "InMemoryChannel", "c")),
        "kind InMemoryChannel (apiVersion messaging.knative.dev/v1)",
    ),
    (
        "broker of another version",
        Destination(ref=ref("eventing.knative.dev/v1beta1", "Broker", "default")),
        "v1beta1",
    ),
    ("nothing", Destination(), "neither ref nor uri"),
]


@pytest.mark.parametrize(("dest", "reason"), [r[1:] for r in UNRESOLVED], ids=[r[0] for r in UNRESOLVED])
def test_unresolved(dest: Destination, reason: str) -> None:
    with pytest.raises(UnresolvedDestination) as caught:
        resolve(dest, namespace="default", ctx=CTX)
    assert reason in caught.value.reason
    assert isinstance(caught.value, WeirError) and not caught.value.retriable


FULL = DeliveryOptions(
    retry=3,
    backoff_policy="linear",
    backoff_delay=0.5,
    timeout=10.0,
    retry_after_max=0.0,
    backoff_max=30.0,
    format="json",
    dead_letter_sink=Destination(ref=ref(SINK, "IntegrationSink", "display")),
)
SPECS = [
    ("absent: broker default", None, BROKER_DEFAULT_DELIVERY),
    (
        "every field",
        FULL,
        DeliverySpec(
            retry=3,
            backoff_policy="linear",
            backoff_delay=0.5,
            timeout=10.0,
            retry_after_max=0.0,
            backoff_max=30.0,
            structured=True,
            dead_letter_sink=SINKS["default", "display"],
        ),
    ),
    ("empty block: no retries", DeliveryOptions(), DeliverySpec()),
    ("only a timeout", DeliveryOptions(timeout=2.0), DeliverySpec(retry=0, timeout=2.0)),
    ("binary format", DeliveryOptions(retry=1, format="binary"), DeliverySpec(retry=1, structured=False)),
    (
        "exponential",
        DeliveryOptions(retry=2, backoff_policy="exponential", backoff_delay=0.1),
        DeliverySpec(retry=2, backoff_policy="exponential", backoff_delay=0.1),
    ),
]


@pytest.mark.parametrize(("options", "spec"), [r[1:] for r in SPECS], ids=[r[0] for r in SPECS])
def test_delivery_spec(options: DeliveryOptions | None, spec: DeliverySpec) -> None:
    assert delivery_spec(options, namespace="default", ctx=CTX) == spec


def test_delivery_spec_with_unresolvable_dead_letter_sink() -> None:
    options = DeliveryOptions(retry=1, dead_letter_sink=Destination(ref=ref(BROKER, "Broker", "gone")))
    with pytest.raises(UnresolvedDestination, match="Broker default/gone does not exist"):
        delivery_spec(options, namespace="default", ctx=CTX)


MANIFESTS = textwrap.dedent(
    """\
    apiVersion: eventing.knative.dev/v1
    kind: Broker
    metadata: {name: with-delivery}
    spec:
      delivery: {retry: 4, backoffDelay: PT1S, deadLetterSink: {uri: "http://127.0.0.1:9/dlq"}}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Broker
    metadata: {name: plain}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: inherits}
    spec: {broker: with-delivery, subscriber: {uri: "http://127.0.0.1:9/a"}}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: replaces}
    spec:
      broker: with-delivery
      subscriber: {uri: "http://127.0.0.1:9/b"}
      delivery: {timeout: PT5S}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: on-plain}
    spec: {broker: plain, subscriber: {uri: "http://127.0.0.1:9/c"}}
    """
)
EFFECTIVE = [
    (
        "trigger without delivery inherits the broker's",
        "inherits",
        DeliverySpec(retry=4, backoff_delay=1.0, dead_letter_sink="http://127.0.0.1:9/dlq"),
    ),
    ("trigger delivery replaces the broker's wholesale", "replaces", DeliverySpec(retry=0, timeout=5.0)),
    ("broker without delivery gives the default", "on-plain", BROKER_DEFAULT_DELIVERY),
]


@pytest.mark.parametrize(("trigger_name", "spec"), [r[1:] for r in EFFECTIVE], ids=[r[0] for r in EFFECTIVE])
def test_effective_delivery(trigger_name: str, spec: DeliverySpec) -> None:
    result = load_text(MANIFESTS, file="m.yaml")
    assert result.problems == []
    brokers = {r.name: r for r in result.resources if isinstance(r, Broker)}
    [trigger] = [r for r in result.resources if isinstance(r, Trigger) and r.name == trigger_name]
    options = effective_delivery(trigger, brokers[trigger.broker])
    assert delivery_spec(options, namespace=trigger.namespace, ctx=CTX) == spec


def test_effective_delivery_without_a_broker() -> None:
    result = load_text(MANIFESTS, file="m.yaml")
    triggers = {r.name: r for r in result.resources if isinstance(r, Trigger)}
    assert effective_delivery(triggers["inherits"], None) is None
    assert effective_delivery(triggers["replaces"], None) == DeliveryOptions(timeout=5.0)
