"""The control plane's views across applies: generations, Knative-shaped status, spec as written.

A real dispatcher on a memory store runs the applied plans; nothing is delivered (no events).
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import orjson
import pytest

from broker.delivery.dispatcher import Dispatcher, DispatcherConfig
from broker.delivery.http_sender import HttpSender
from broker.ingest import Ingest
from broker.store.memory import MemoryStore
from weir.admin import LIST_BATCH, _list
from weir.controlplane import ControlPlane
from weir.manifests import load_text
from weir.sinks import LocalSender, SinkRegistry

BROKER = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"
SINK = (
    "apiVersion: sinks.knative.dev/v1alpha1\nkind: IntegrationSink\nmetadata: {name: show}\n"
    "spec: {log: {}}\n"
)


def trigger(name: str, spec: str) -> str:
    return (
        f"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


HEALTHY = """\
broker: default
filter: {attributes: {type: a}}
subscriber: {uri: "http://127.0.0.1:9/t"}
"""
HEALTHY_REORDERED = """\
subscriber: {uri: "http://127.0.0.1:9/t"}
filter: {attributes: {type: a}}
broker: default
"""


@pytest.fixture
async def control(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ControlPlane]:
    monkeypatch.setattr("weir.controlplane._now", lambda: "2026-01-01T00:00:00Z")
    store = MemoryStore()
    await store.open()
    sinks = SinkRegistry("http://127.0.0.1:1")
    sender = LocalSender(HttpSender(), sinks)
    dispatcher = Dispatcher(store=store, sender=sender, ingest=Ingest(store), config=DispatcherConfig())
    await dispatcher.start()
    try:
        yield ControlPlane(dispatcher=dispatcher, sinks=sinks, base_url="http://127.0.0.1:1")
    finally:
        await dispatcher.stop(0.0)
        await sender.close()


async def apply(control: ControlPlane, *docs: str) -> None:
    assert await control.apply(load_text("---\n".join(docs), file="m.yaml")) == []


def view(control: ControlPlane, name: str) -> dict[str, Any]:
    found = control.object(("Trigger", "default", name))
    assert found is not None
    return found


def conditions(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["lastTransitionTime"]) for c in obj["status"]["conditions"]]


async def test_healthy_trigger_view(control: ControlPlane) -> None:
    await apply(control, BROKER, trigger("t", HEALTHY))
    assert view(control, "t") == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "default", "generation": 1},
        "spec": {
            "broker": "default",
            "filter": {"attributes": {"type": "a"}},
            "subscriber": {"uri": "http://127.0.0.1:9/t"},
        },
        "status": {
            "subscriberUri": "http://127.0.0.1:9/t",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                for t in ("Ready", "BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved")
            ],
            "observedGeneration": 1,
        },
    }
    assert list(view(control, "t")["status"]) == ["subscriberUri", "conditions", "observedGeneration"]


async def test_views_are_independent_copies(control: ControlPlane) -> None:
    await apply(control, BROKER, trigger("a", HEALTHY), trigger("b", HEALTHY))
    first = view(control, "a")
    first["spec"]["broker"] = "changed"
    first["status"]["conditions"].clear()
    first["status"]["observedGeneration"] = 9
    again = view(control, "a")
    assert again["spec"]["broker"] == "default"
    assert len(again["status"]["conditions"]) == 4 and again["status"]["observedGeneration"] == 1


async def test_reordered_spec_keeps_the_generation_and_shows_the_new_order(
    control: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    await apply(control, BROKER, trigger("t", HEALTHY))
    monkeypatch.setattr("weir.controlplane._now", lambda: "2026-01-02T00:00:00Z")
    await apply(control, BROKER, trigger("t", HEALTHY_REORDERED))
    obj = view(control, "t")
    assert obj["metadata"]["generation"] == obj["status"]["observedGeneration"] == 1
    assert list(obj["spec"]) == ["subscriber", "filter", "broker"]
    assert {since for _, _, since in conditions(obj)} == {"2026-01-01T00:00:00Z"}

    await apply(control, BROKER, trigger("t", HEALTHY.replace("type: a", "type: b")))
    obj = view(control, "t")
    assert obj["metadata"]["generation"] == obj["status"]["observedGeneration"] == 2
    assert obj["spec"]["filter"] == {"attributes": {"type": "b"}}


async def test_transition_times_change_only_with_a_condition_status(
    control: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = "subscriber: {ref: {apiVersion: sinks.knative.dev/v1alpha1, kind: IntegrationSink, name: show}}\n"
    spec = "broker: default\n" + ref
    await apply(control, BROKER, SINK, trigger("t", spec))
    day1, day2, day3 = (f"2026-01-0{d}T00:00:00Z" for d in (1, 2, 3))
    assert conditions(view(control, "t"))[:3] == [
        ("Ready", "True", day1), ("BrokerReady", "True", day1), ("SubscriberResolved", "True", day1)
    ]

    monkeypatch.setattr("weir.controlplane._now", lambda: day2)
    await apply(control, BROKER, trigger("t", spec))  # the sink is gone
    obj = view(control, "t")
    assert conditions(obj) == [
        ("Ready", "False", day2),
        ("BrokerReady", "True", day1),
        ("SubscriberResolved", "False", day2),
        ("DeadLetterSinkResolved", "True", day1),
    ]
    ready = obj["status"]["conditions"][0]
    assert ready["reason"] == "Unresolved" and "show" in ready["message"]
    assert list(ready) == ["type", "status", "reason", "message", "lastTransitionTime"]
    assert "subscriberUri" not in obj["status"]

    monkeypatch.setattr("weir.controlplane._now", lambda: day3)
    await apply(control, trigger("t", spec))  # and now the Broker too
    assert conditions(view(control, "t"))[:3] == [
        ("Ready", "False", day2), ("BrokerReady", "False", day3), ("SubscriberResolved", "False", day2)
    ]
    assert view(control, "t")["status"]["conditions"][0]["reason"] == "BrokerDoesNotExist"


async def test_broker_and_sink_views(control: ControlPlane) -> None:
    await apply(control, BROKER, SINK)
    broker = control.objects("Broker")[0]
    assert broker["status"]["address"] == {"url": "http://127.0.0.1:1/default/default"}
    assert [c["type"] for c in broker["status"]["conditions"]] == ["Ready", "IngressReady", "Addressable"]
    [sink] = control.objects("IntegrationSink")
    assert sink["spec"] == {"log": {}}
    assert list(sink["status"]) == ["address", "conditions", "observedGeneration"]
    assert [c["type"] for c in sink["status"]["conditions"]] == ["Ready"]


async def test_listing_body_is_the_whole_list_encoded_in_batches(control: ControlPlane) -> None:
    names = [f"t{k:03d}" for k in range(LIST_BATCH * 2 + 3)]
    await apply(control, BROKER, *(trigger(n, HEALTHY) for n in names))
    response = _list("eventing.knative.dev/v1", "Trigger", control.iter_objects("Trigger", "default"))
    assert response.media_type == "application/json"
    assert orjson.loads(response.body) == {
        "apiVersion": "eventing.knative.dev/v1", "kind": "TriggerList", "items": control.objects("Trigger"),
    }
    assert [item["metadata"]["name"] for item in control.objects("Trigger")] == names
    empty = _list("eventing.knative.dev/v1", "Trigger", iter([]))
    assert orjson.loads(empty.body)["items"] == []
    # What JSON cannot carry as loaded is encoded the way FastAPI encodes it.
    odd = _list("v1", "Thing", [{"spec": {"when": date(2026, 1, 2), "tags": {"a"}}}])
    assert orjson.loads(odd.body)["items"] == [{"spec": {"when": "2026-01-02", "tags": ["a"]}}]
