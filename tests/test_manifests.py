"""Manifest loading and webhook-style validation: one row per rule, plus files and updates."""

from __future__ import annotations

import copy
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from weir.manifests import (
    Broker,
    DeliveryOptions,
    Destination,
    IntegrationSink,
    KRef,
    Resource,
    Trigger,
    check_immutable,
    load_paths,
    load_text,
)

HERE = Path(__file__).parent
FIXTURES = HERE / "manifests"
EXAMPLES = HERE.parent / "deploy" / "examples"

DROP = object()
"""In a patch: remove this field from the base manifest."""

BROKER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default"},
}
TRIGGER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {"name": "orders"},
    "spec": {"broker": "default", "subscriber": {"uri": "http://127.0.0.1:9/events"}},
}
SINK: dict[str, Any] = {
    "apiVersion": "sinks.knative.dev/v1alpha1",
    "kind": "IntegrationSink",
    "metadata": {"name": "display"},
    "spec": {"log": {}},
}
DLS_REF = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dlq"}}


def patched(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` deep-merged with ``patch`` (dicts merge, other values replace, DROP removes)."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DROP:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = patched(result[key], value)
        else:
            result[key] = value
    return result


def load_one(manifest: dict[str, Any]) -> tuple[Resource | None, list[str]]:
    result = load_text(yaml.safe_dump(manifest), file="x.yaml")
    assert len(result.resources) <= 1
    return (result.resources[0] if result.resources else None), result.problems


def trigger_delivery(delivery: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return TRIGGER, {"spec": {"delivery": delivery}}


Row = tuple[str, dict[str, Any], dict[str, Any], str]

# (id, base, patch, expected substring of the only problem)
INVALID: list[Row] = [
    # -- document and metadata ----------------------------------------------------------------
    ("no apiVersion", BROKER, {"apiVersion": DROP}, "apiVersion: missing required field"),
    ("no kind", BROKER, {"kind": DROP}, "kind: missing required field"),
    ("no metadata", BROKER, {"metadata": DROP}, "metadata: missing required field"),
    ("no name", BROKER, {"metadata": {"name": DROP}}, "metadata.name: missing required field"),
    (
        "bad name",
        BROKER,
        {"metadata": {"name": "Orders_1"}},
        'metadata.name: "Orders_1" is not a DNS-1123 subdomain',
    ),
    ("long name", BROKER, {"metadata": {"name": "a" * 254}}, "metadata.name: " + '"' + "a" * 254),
    (
        "bad namespace",
        BROKER,
        {"metadata": {"namespace": "a.b"}},
        'metadata.namespace: "a.b" is not a DNS-1123 label',
    ),
    (
        "name not a string",
        BROKER,
        {"metadata": {"name": 7}},
        "metadata.name: must be a string, got the number 7",
    ),
    ("generateName", BROKER, {"metadata": {"generateName": "b-"}}, "metadata.generateName: not supported"),
    ("unknown metadata", BROKER, {"metadata": {"nmae": "x"}}, 'unknown field "metadata.nmae"'),
    ("unknown top-level", BROKER, {"sepc": {}}, 'unknown field "sepc"'),
    (
        "labels not a map",
        BROKER,
        {"metadata": {"labels": ["a"]}},
        "metadata.labels: must be a map of strings",
    ),
    (
        "annotation not a string",
        TRIGGER,
        {"metadata": {"annotations": {"weir.dev/max-in-flight": 8}}},
        "metadata.annotations[weir.dev/max-in-flight]: must be a string (quote it), got the number 8",
    ),
    (
        "label not a string",
        BROKER,
        {"metadata": {"labels": {"team": True}}},
        "metadata.labels.team: must be a string (quote it), got true",
    ),
    ("spec not an object", BROKER, {"spec": "x"}, 'spec: must be an object, got "x"'),
    # -- kinds --------------------------------------------------------------------------------
    (
        "unsupported kind",
        BROKER,
        {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel"},
        "InMemoryChannel default/default: kind InMemoryChannel (apiVersion messaging.knative.dev/v1) "
        "is not supported yet",
    ),
    (
        "known kind, other version",
        BROKER,
        {"apiVersion": "eventing.knative.dev/v1beta1"},
        "kind Broker (apiVersion eventing.knative.dev/v1beta1) is not supported yet",
    ),
    # -- Broker -------------------------------------------------------------------------------
    ("broker unknown spec field", BROKER, {"spec": {"foo": 1}}, 'unknown field "spec.foo"'),
    (
        "broker config without name",
        BROKER,
        {"spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap"}}},
        "spec.config.name: missing required field",
    ),
    (
        "broker config extra field",
        BROKER,
        {"spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "group": "g"}}},
        'unknown field "spec.config.group"',
    ),
    (
        "empty broker class",
        BROKER,
        {"metadata": {"annotations": {"eventing.knative.dev/broker.class": " "}}},
        "metadata.annotations[eventing.knative.dev/broker.class]: must not be empty",
    ),
    (
        "broker delivery",
        BROKER,
        {"spec": {"delivery": {"retry": -1}}},
        "spec.delivery.retry: -1 is out of range",
    ),
    # -- DeliverySpec -------------------------------------------------------------------------
    (
        "retry negative",
        *trigger_delivery({"retry": -1}),
        "spec.delivery.retry: -1 is out of range [0, 2147483647]",
    ),
    ("retry string", *trigger_delivery({"retry": "3"}), 'spec.delivery.retry: must be an integer, got "3"'),
    ("retry bool", *trigger_delivery({"retry": True}), "spec.delivery.retry: must be an integer, got true"),
    ("retry too big", *trigger_delivery({"retry": 2**31}), "spec.delivery.retry: 2147483648 is out of range"),
    (
        "backoffPolicy",
        *trigger_delivery({"backoffPolicy": "constant"}),
        'spec.delivery.backoffPolicy: "constant" is not one of exponential, linear',
    ),
    (
        "backoffDelay not ISO",
        *trigger_delivery({"backoffDelay": "5s"}),
        'spec.delivery.backoffDelay: "5s" is not an ISO-8601 duration (e.g. PT5S)',
    ),
    (
        "backoffDelay number",
        *trigger_delivery({"backoffDelay": 5}),
        "spec.delivery.backoffDelay: must be an ISO-8601 duration string (e.g. PT5S), got the number 5",
    ),
    ("backoffDelay bare PT", *trigger_delivery({"backoffDelay": "PT"}), '"PT" is not an ISO-8601 duration'),
    ("backoffDelay trailing T", *trigger_delivery({"backoffDelay": "P1DT"}), '"P1DT" is not an ISO-8601'),
    ("backoffDelay negative", *trigger_delivery({"backoffDelay": "-PT1S"}), '"-PT1S" must not be negative'),
    (
        "backoffDelay months",
        *trigger_delivery({"backoffDelay": "P1M"}),
        'spec.delivery.backoffDelay: "P1M": years and months have no fixed length',
    ),
    ("backoffDelay years", *trigger_delivery({"backoffDelay": "P1Y"}), "years and months"),
    (
        "timeout zero",
        *trigger_delivery({"timeout": "PT0S"}),
        'spec.delivery.timeout: "PT0S" must be greater than zero',
    ),
    (
        "timeout lower case",
        *trigger_delivery({"timeout": "pt5s"}),
        'spec.delivery.timeout: "pt5s" is not an ISO',
    ),
    ("retryAfterMax negative", *trigger_delivery({"retryAfterMax": "-PT1S"}), "spec.delivery.retryAfterMax:"),
    (
        "backoffMax zero",
        *trigger_delivery({"backoffMax": "PT0S"}),
        'spec.delivery.backoffMax: "PT0S" must be greater',
    ),
    (
        "format",
        *trigger_delivery({"format": "xml"}),
        'spec.delivery.format: "xml" is not one of json, binary',
    ),
    ("delivery unknown field", *trigger_delivery({"retries": 3}), 'unknown field "spec.delivery.retries"'),
    ("delivery not an object", *trigger_delivery(["retry"]), "spec.delivery: must be an object, got a list"),
    (
        "deadLetterSink empty",
        *trigger_delivery({"deadLetterSink": {}}),
        "spec.delivery.deadLetterSink: expected at least one of ref, uri; got none",
    ),
    (
        "deadLetterSink relative uri",
        *trigger_delivery({"deadLetterSink": {"uri": "/dlq"}}),
        'spec.delivery.deadLetterSink.uri: "/dlq" must be an absolute http:// or https:// URI',
    ),
    # -- Destination --------------------------------------------------------------------------
    ("no subscriber", TRIGGER, {"spec": {"subscriber": DROP}}, "spec.subscriber: missing required field"),
    (
        "empty subscriber",
        TRIGGER,
        {"spec": {"subscriber": {"uri": DROP}}},
        "spec.subscriber: expected at least one of ref, uri",
    ),
    (
        "empty uri",
        TRIGGER,
        {"spec": {"subscriber": {"uri": ""}}},
        "spec.subscriber: expected at least one of ref, uri",
    ),
    (
        "uri not http",
        TRIGGER,
        {"spec": {"subscriber": {"uri": "ftp://h/x"}}},
        'spec.subscriber.uri: "ftp://h/x" must',
    ),
    (
        "uri without host",
        TRIGGER,
        {"spec": {"subscriber": {"uri": "http:///x"}}},
        'spec.subscriber.uri: "http:///x"',
    ),
    ("uri bad IPv6", TRIGGER, {"spec": {"subscriber": {"uri": "http://[::1/x"}}}, "is not a valid URI"),
    (
        "uri not a string",
        TRIGGER,
        {"spec": {"subscriber": {"uri": 5}}},
        "spec.subscriber.uri: must be a string",
    ),
    (
        "absolute uri with ref",
        TRIGGER,
        {"spec": {"subscriber": {"uri": "http://h/x", **DLS_REF}}},
        'spec.subscriber.uri: "http://h/x": an absolute URI is not allowed when ref is set',
    ),
    (
        "ref without kind",
        TRIGGER,
        {"spec": {"subscriber": {"uri": DROP, "ref": {"apiVersion": "v1", "name": "svc"}}}},
        "spec.subscriber.ref.kind: missing required field",
    ),
    (
        "ref group",
        TRIGGER,
        {"spec": {"subscriber": {"ref": {**DLS_REF["ref"], "group": "apps"}, "uri": DROP}}},
        'unknown field "spec.subscriber.ref.group"',
    ),
    (
        "ref bad namespace",
        TRIGGER,
        {"spec": {"subscriber": {"ref": {**DLS_REF["ref"], "namespace": "NS"}, "uri": DROP}}},
        'spec.subscriber.ref.namespace: "NS" is not a DNS-1123 label',
    ),
    (
        "CACerts",
        TRIGGER,
        {"spec": {"subscriber": {"CACerts": "PEM"}}},
        "spec.subscriber.CACerts: not supported yet",
    ),
    (
        "audience",
        TRIGGER,
        {"spec": {"subscriber": {"audience": "a"}}},
        "spec.subscriber.audience: not supported yet",
    ),
    # -- Trigger ------------------------------------------------------------------------------
    ("trigger unknown field", TRIGGER, {"spec": {"foo": 1}}, 'unknown field "spec.foo"'),
    (
        "no broker",
        TRIGGER,
        {"spec": {"broker": DROP}},
        "spec.broker: missing required field (or spec.brokerRef)",
    ),
    (
        "broker not a string",
        TRIGGER,
        {"spec": {"broker": ["a"]}},
        "spec.broker: must be a string, got a list",
    ),
    (
        "broker and brokerRef",
        TRIGGER,
        {
            "spec": {
                "brokerRef": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
            }
        },
        "spec.broker, spec.brokerRef: expected exactly one, got both",
    ),
    (
        "brokerRef other namespace",
        TRIGGER,
        {
            "spec": {
                "broker": DROP,
                "brokerRef": {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Broker",
                    "name": "b",
                    "namespace": "o",
                },
            }
        },
        'spec.brokerRef.namespace: "o" must be empty or the Trigger\'s namespace "default"',
    ),
    (
        "brokerRef not a Broker",
        TRIGGER,
        {"spec": {"broker": DROP, "brokerRef": {"apiVersion": "v1", "kind": "Service", "name": "b"}}},
        "spec.brokerRef: must refer to a Broker (eventing.knative.dev/v1), got Service (v1)",
    ),
    (
        "brokerRef without name",
        TRIGGER,
        {"spec": {"broker": DROP, "brokerRef": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker"}}},
        "spec.brokerRef.name: missing required field",
    ),
    (
        "filters dialect",
        TRIGGER,
        {"spec": {"filters": [{"exact": {"Type": "a"}}]}},
        "spec.filters[0].exact.Type: ",
    ),
    ("filters not a list", TRIGGER, {"spec": {"filters": {"exact": {}}}}, "spec.filters: "),
    (
        "legacy filter key",
        TRIGGER,
        {"spec": {"filter": {"attributes": {"Type": "a"}}}},
        "spec.filter.attributes.Type",
    ),
    (
        "delivery order",
        TRIGGER,
        {"metadata": {"annotations": {"kafka.eventing.knative.dev/delivery.order": "sometimes"}}},
        'metadata.annotations[kafka.eventing.knative.dev/delivery.order]: "sometimes" is not one of ordered',
    ),
    (
        "max in flight zero",
        TRIGGER,
        {"metadata": {"annotations": {"weir.dev/max-in-flight": "0"}}},
        'metadata.annotations[weir.dev/max-in-flight]: "0" is not a positive integer',
    ),
    (
        "max in flight word",
        TRIGGER,
        {"metadata": {"annotations": {"weir.dev/max-in-flight": "many"}}},
        '"many" is not a positive integer',
    ),
    # -- IntegrationSink ----------------------------------------------------------------------
    ("sink aws", SINK, {"spec": {"log": DROP, "aws": {"s3": {}}}}, "spec.aws: not supported yet"),
    ("sink log and aws", SINK, {"spec": {"aws": {"s3": {}}}}, "spec: only one sink type can be set"),
    ("sink without spec", SINK, {"spec": DROP}, "spec: at least one sink type must be specified (spec.log)"),
    ("sink unknown type", SINK, {"spec": {"http": {}}}, 'unknown field "spec.http"'),
    (
        "sink level",
        SINK,
        {"spec": {"log": {"level": "LOUD"}}},
        'spec.log.level: "LOUD" is not one of ERROR, WARN',
    ),
    (
        "sink flag",
        SINK,
        {"spec": {"log": {"showBody": "yes"}}},
        'spec.log.showBody: must be true or false, got "yes"',
    ),
    ("sink logger name", SINK, {"spec": {"log": {"loggerName": 1}}}, "spec.log.loggerName: must be a string"),
    ("sink unknown option", SINK, {"spec": {"log": {"colour": True}}}, 'unknown field "spec.log.colour"'),
    ("sink log not an object", SINK, {"spec": {"log": "INFO"}}, 'spec.log: must be an object, got "INFO"'),
]


@pytest.mark.parametrize(
    ("base", "patch", "expected"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_rule(base: dict[str, Any], patch: dict[str, Any], expected: str) -> None:
    resource, problems = load_one(patched(base, patch))
    assert resource is None
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith("x.yaml:")


VALID: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("minimal broker", BROKER, {}),
    (
        "broker class Kafka",
        BROKER,
        {"metadata": {"annotations": {"eventing.knative.dev/broker.class": "Kafka"}}},
    ),
    (
        "broker class Weir",
        BROKER,
        {"metadata": {"annotations": {"eventing.knative.dev/broker.class": "Weir"}}},
    ),
    ("broker config", BROKER, {"spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}}}),
    ("null spec fields", TRIGGER, {"spec": {"delivery": None, "filter": None, "filters": None}}),
    ("retryAfterMax zero", *trigger_delivery({"retryAfterMax": "PT0S", "backoffDelay": "PT0S"})),
    ("days and weeks", *trigger_delivery({"timeout": "P1D", "backoffMax": "P1W", "backoffDelay": "PT1,5S"})),
    ("ref with relative uri", TRIGGER, {"spec": {"subscriber": {**DLS_REF, "uri": "/events"}}}),
    ("https uri", TRIGGER, {"spec": {"subscriber": {"uri": "https://example.com/x"}}}),
    (
        "brokerRef same namespace",
        TRIGGER,
        {
            "spec": {
                "broker": DROP,
                "brokerRef": {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Broker",
                    "name": "b",
                    "namespace": "default",
                },
            }
        },
    ),
    (
        "status and server metadata ignored",
        BROKER,
        {"status": {"conditions": []}, "metadata": {"uid": "u", "generation": 4}},
    ),
    ("legacy empty filter", TRIGGER, {"spec": {"filter": {"attributes": {}}}}),
    (
        "every log option",
        SINK,
        {"spec": {"log": {"loggerName": "l", "level": "WARN", "marker": "m", "multiline": True}}},
    ),
]


@pytest.mark.parametrize(("base", "patch"), [row[1:] for row in VALID], ids=[row[0] for row in VALID])
def test_valid(base: dict[str, Any], patch: dict[str, Any]) -> None:
    resource, problems = load_one(patched(base, patch))
    assert problems == []
    assert resource is not None


def test_examples_load_without_problems() -> None:
    result = load_paths([str(EXAMPLES)])
    assert result.problems == []
    by_kind = {r.kind: r for r in result.resources}
    assert set(by_kind) == {"Broker", "Trigger", "IntegrationSink"}
    trigger = by_kind["Trigger"]
    assert isinstance(trigger, Trigger)
    assert (
        trigger.subscriber.ref is not None and trigger.subscriber.ref.name == by_kind["IntegrationSink"].name
    )
    assert (by_kind["Broker"].namespace, by_kind["Broker"].name) == ("default", trigger.broker)


def test_problem_line_names_file_line_document_path_and_reason() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: eventing.knative.dev/v1
        kind: Trigger
        metadata:
          name: orders
        spec:
          broker: default
          subscriber:
            uri: http://127.0.0.1:9/
          delivery:
            retry: 3
            backoffDelay: 5s
        """
    )
    result = load_text(text, file="deploy/x.yaml")
    assert result.problems == [
        "deploy/x.yaml:11: Trigger default/orders: "
        'spec.delivery.backoffDelay: "5s" is not an ISO-8601 duration (e.g. PT5S)'
    ]


def test_defaults_and_typed_fields() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: eventing.knative.dev/v1
        kind: Trigger
        metadata:
          name: orders
          annotations:
            kafka.eventing.knative.dev/delivery.order: ordered
            weir.dev/max-in-flight: "8"
          labels: {team: shop}
        spec:
          brokerRef: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: main}
          filters: [{prefix: {type: com.example.}}]
          subscriber:
            ref: {apiVersion: v1, kind: Service, name: handler, namespace: apps}
            uri: /events
          delivery:
            retry: 2
            backoffPolicy: linear
            backoffDelay: PT0.5S
            timeout: PT1M
            retryAfterMax: PT30S
            backoffMax: PT2M
            format: json
            deadLetterSink: {uri: "http://127.0.0.1:9/dlq"}
        """
    )
    result = load_text(text, file="t.yaml")
    assert result.problems == []
    [trigger] = result.resources
    assert isinstance(trigger, Trigger)
    assert trigger.key == ("Trigger", "default", "orders")
    assert trigger.broker == "main"
    assert trigger.ordered is True
    assert trigger.max_in_flight == 8
    assert trigger.labels == {"team": "shop"}
    assert trigger.filter_ is None
    assert trigger.filters == [{"prefix": {"type": "com.example."}}]
    assert trigger.subscriber == Destination(
        ref=KRef(api_version="v1", kind="Service", name="handler", namespace="apps"), uri="/events"
    )
    assert trigger.delivery == DeliveryOptions(
        retry=2,
        backoff_policy="linear",
        backoff_delay=0.5,
        timeout=60.0,
        retry_after_max=30.0,
        backoff_max=120.0,
        format="json",
        dead_letter_sink=Destination(uri="http://127.0.0.1:9/dlq"),
    )
    assert trigger.spec["delivery"]["backoffDelay"] == "PT0.5S"  # spec is kept as written
    assert (trigger.origin.file, trigger.origin.index, trigger.origin.line) == ("t.yaml", 1, 1)
    assert trigger.generation == 1


def test_trigger_and_broker_defaults() -> None:
    result = load_text(yaml.safe_dump_all([BROKER, TRIGGER]), file="d.yaml")
    assert result.problems == []
    broker, trigger = result.resources
    assert isinstance(broker, Broker) and isinstance(trigger, Trigger)
    assert broker.namespace == "default" and broker.delivery is None
    assert broker.broker_class == "MTChannelBasedBroker"
    assert broker.spec == {}
    assert (trigger.ordered, trigger.max_in_flight, trigger.delivery) == (False, None, None)


def test_multi_document_skips_empty_documents_and_counts_them() -> None:
    text = "---\n---\n# only a comment\n---\n" + yaml.safe_dump(SINK) + "---\n- not\n- an object\n"
    result = load_text(text, file="m.yaml")
    [sink] = result.resources
    assert isinstance(sink, IntegrationSink) and sink.log == {}
    assert sink.origin.index == 3
    [problem] = result.problems
    assert problem.startswith("m.yaml:") and "document #4: a manifest must be an object" in problem


def test_several_problems_in_one_document_are_all_reported() -> None:
    manifest = patched(
        TRIGGER,
        {"spec": {"broker": DROP, "subscriber": {"uri": DROP}, "delivery": {"retry": -1, "format": "x"}}},
    )
    _, problems = load_one(manifest)
    assert len(problems) == 4
    assert any("spec.broker:" in p for p in problems) and any("spec.delivery.format:" in p for p in problems)


def test_problem_without_usable_name_names_the_document() -> None:
    _, problems = load_one(patched(BROKER, {"metadata": {"name": "Bad Name"}}))
    assert problems[0].startswith("x.yaml:4: document #1: metadata.name:")


def test_invalid_yaml_is_a_problem_with_its_line() -> None:
    text = yaml.safe_dump(BROKER) + "---\nkind: [Broker\n"
    result = load_text(text, file="y.yaml")
    assert len(result.resources) == 1
    [problem] = result.problems
    assert problem.startswith("y.yaml:") and "invalid YAML" in problem


def test_recursive_alias_does_not_hang() -> None:
    text = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: &s {delivery: *s}\n"
    result = load_text(text, file="r.yaml")
    assert result.resources == [] and len(result.problems) == 1
    assert "spec.delivery" in result.problems[0]


def test_directory_is_read_recursively_in_sorted_order() -> None:
    result = load_paths([str(FIXTURES / "tree")])
    assert result.problems == []
    assert [(r.kind, r.name) for r in result.resources] == [
        ("IntegrationSink", "display"),
        ("IntegrationSink", "audit"),
        ("Broker", "default"),
        ("Trigger", "orders"),
    ]
    audit = result.resources[1]
    assert audit.origin.index == 3 and audit.origin.file.endswith("a-sink.yml")


def test_a_file_named_twice_is_read_once() -> None:
    tree = FIXTURES / "tree"
    result = load_paths([str(tree / "b-broker.yaml"), str(tree)])
    assert result.problems == []
    assert len(result.resources) == 4


def test_duplicates_across_files_name_both_files() -> None:
    result = load_paths([str(FIXTURES / "dup")])
    [problem] = result.problems
    assert "second.yaml:6: Broker default/default: declared twice" in problem
    assert "first.yaml:1" in problem
    assert sorted(r.name for r in result.resources) == ["default", "other"]


def test_io_problems(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"kind: caf\xe9\n")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(BROKER))
    result = load_paths([str(tmp_path / "missing.yaml"), str(tmp_path)])
    assert len(result.resources) == 1
    assert result.problems[0] == f"{tmp_path / 'missing.yaml'}: no such file or directory"
    assert result.problems[1].startswith(f"{tmp_path / 'latin1.yaml'}: not UTF-8 text")


def _load(manifest: dict[str, Any]) -> Resource:
    resource, problems = load_one(manifest)
    assert resource is not None, problems
    return resource


CLASS = "eventing.knative.dev/broker.class"
REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker"}
IMMUTABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
    (
        "trigger broker",
        TRIGGER,
        {},
        {"spec": {"broker": "other"}},
        'spec.broker: immutable field changed from "default"',
    ),
    (
        "broker config",
        BROKER,
        {},
        {"spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}}},
        "spec.config: immutable field changed from (unset) to",
    ),
    (
        "broker class",
        BROKER,
        {"metadata": {"annotations": {CLASS: "Kafka"}}},
        {"metadata": {"annotations": {CLASS: "Weir"}}},
        f'metadata.annotations[{CLASS}]: immutable field changed from "Kafka" to "Weir"',
    ),
]
MUTABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("trigger subscriber", TRIGGER, {}, {"spec": {"subscriber": {"uri": "http://127.0.0.1:9/other"}}}),
    (
        "trigger broker to brokerRef",
        TRIGGER,
        {},
        {"spec": {"broker": DROP, "brokerRef": {**REF, "name": "default"}}},
    ),
    ("broker delivery", BROKER, {}, {"spec": {"delivery": {"retry": 1}}}),
    ("class made explicit", BROKER, {}, {"metadata": {"annotations": {CLASS: "MTChannelBasedBroker"}}}),
]


@pytest.mark.parametrize(
    ("base", "old", "new", "expected"), [r[1:] for r in IMMUTABLE], ids=[r[0] for r in IMMUTABLE]
)
def test_immutable_fields(
    base: dict[str, Any], old: dict[str, Any], new: dict[str, Any], expected: str
) -> None:
    before, after = _load(patched(base, old)), _load(patched(base, new))
    [problem] = check_immutable(before, after)
    assert problem.startswith(f"x.yaml:1: {after.label}: ")
    assert expected in problem


@pytest.mark.parametrize(("base", "old", "new"), [r[1:] for r in MUTABLE], ids=[r[0] for r in MUTABLE])
def test_mutable_fields(base: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    assert check_immutable(_load(patched(base, old)), _load(patched(base, new))) == []


def test_resources_are_frozen_and_generation_is_replaceable() -> None:
    broker = _load(BROKER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        broker.name = "x"  # type: ignore[misc]
    assert dataclasses.replace(broker, generation=2).generation == 2
