"""How loaded manifests are held: compact ``spec`` values and strings shared within one load."""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from weir.manifests import Destination, KRef, Origin, Trigger, load_paths, load_text
from weir.manifests.documents import parse
from weir.manifests.duck import accepted_destination, destination
from weir.manifests.fields import Problems
from weir.manifests.frozen import FrozenSpec, freeze, thaw


def trigger_yaml(name: str, spec: str) -> str:
    return (
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: {name}}}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


ORDERED = """\
broker: default
filter: {attributes: {type: a, source: /s}}
subscriber: {uri: "http://127.0.0.1:9/t"}
delivery: {retry: 3, backoffDelay: PT1S}
"""
REORDERED = """\
delivery: {backoffDelay: PT1S, retry: 3}
subscriber: {uri: "http://127.0.0.1:9/t"}
filter: {attributes: {source: /s, type: a}}
broker: default
"""


def load_trigger(spec: str, name: str = "t") -> Trigger:
    result = load_text(trigger_yaml(name, spec), file="t.yaml")
    assert result.problems == []
    [trigger] = result.resources
    assert isinstance(trigger, Trigger)
    return trigger


def test_loaded_spec_is_compact_and_reads_as_written() -> None:
    trigger = load_trigger(ORDERED)
    assert isinstance(trigger.spec, FrozenSpec)
    assert list(trigger.spec) == ["broker", "filter", "subscriber", "delivery"]
    assert len(trigger.spec) == 4 and "filter" in trigger.spec and "filters" not in trigger.spec
    assert trigger.spec["delivery"] == {"retry": 3, "backoffDelay": "PT1S"}
    assert trigger.spec.get("filters") is None
    assert thaw(trigger.spec) == {
        "broker": "default",
        "filter": {"attributes": {"type": "a", "source": "/s"}},
        "subscriber": {"uri": "http://127.0.0.1:9/t"},
        "delivery": {"retry": 3, "backoffDelay": "PT1S"},
    }
    assert repr(trigger.spec).startswith("FrozenSpec({'broker': 'default'")


def test_spec_equality_ignores_key_order_but_not_values() -> None:
    first, second = load_trigger(ORDERED), load_trigger(REORDERED)
    assert first.spec == second.spec
    assert first.spec == thaw(second.spec) and thaw(second.spec) == first.spec
    assert list(thaw(second.spec)) == ["delivery", "subscriber", "filter", "broker"]
    changed = load_trigger(ORDERED.replace("type: a", "type: b"))
    assert first.spec != changed.spec
    not_a_mapping: object = ["not", "a", "mapping"]
    assert first.spec != not_a_mapping
    with pytest.raises(TypeError):
        hash(first.spec)


def test_reads_return_copies_that_cannot_change_the_spec() -> None:
    trigger = load_trigger(ORDERED)
    trigger.spec["filter"]["attributes"]["type"] = "changed"
    filter_ = trigger.filter_
    filter_["attributes"]["type"] = "changed"
    thaw(trigger.spec)["broker"] = "changed"
    assert trigger.filter_ == {"attributes": {"type": "a", "source": "/s"}}
    assert trigger.spec["broker"] == "default"
    with pytest.raises(TypeError):
        trigger.spec["broker"] = "x"  # type: ignore[index]


def test_trigger_filters_are_read_from_the_spec() -> None:
    trigger = load_trigger(
        """\
        broker: default
        filters: [{prefix: {type: com.}}, {not: {exact: {source: s}}}]
        subscriber: {uri: "http://127.0.0.1:9/t"}
        """
    )
    assert trigger.filter_ is None
    assert trigger.filters == [{"prefix": {"type": "com."}}, {"not": {"exact": {"source": "s"}}}]
    assert trigger.filters == trigger.spec["filters"]


EXOTIC: list[tuple[str, Any]] = [
    ("integer key", {"a": {1: "one"}}),
    ("date", {"when": date(2024, 1, 2)}),
    ("datetime", {"when": datetime(2024, 1, 2, 3, 4, 5)}),
    ("bytes", {"blob": b"\x00\x01"}),
    ("set", {"tags": {"a", "b"}}),
    ("nan", {"ratio": math.nan}),
    ("infinity", {"limit": math.inf}),
    ("huge integer", {"n": 2**70}),
    ("pairs", {"pairs": [("a", 1)]}),
    ("lone surrogate", {"text": "\ud800"}),
]


@pytest.mark.parametrize("spec", [e[1] for e in EXOTIC], ids=[e[0] for e in EXOTIC])
def test_values_json_cannot_carry_are_kept_as_loaded(spec: dict[str, Any]) -> None:
    assert freeze(spec) is spec
    assert thaw(spec) == spec and thaw(spec) is not spec


def test_recursive_value_is_kept_as_loaded() -> None:
    spec: dict[str, Any] = {}
    spec["self"] = spec
    assert freeze(spec) is spec


def test_json_values_round_trip() -> None:
    spec = {"s": "ü→😀", "i": -(2**63), "u": 2**64 - 1, "f": 0.1, "b": True, "n": None,
            "l": [1, [2, {}]], "e": {}}
    frozen = freeze(spec)
    assert isinstance(frozen, FrozenSpec)
    assert frozen == spec and thaw(frozen) == spec
    assert freeze(frozen) is frozen


CONTAINER_SOURCE = """\
apiVersion: sources.knative.dev/v1
kind: ContainerSource
metadata: {name: hb}
spec:
  sink: {uri: "http://127.0.0.1:9/sink"}
  template:
    spec:
      containers: [{name: c, image: example/hb, command: [/bin/hb]}]
      nodeSelector: {%s}
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1: one", {1: "one"}),
        ("day: 2024-01-02", {"day": date(2024, 1, 2)}),
        ("blob: !!binary AAE=", {"blob": b"\x00\x01"}),
        ("ratio: .nan", None),
        ("n: 1180591620717411303424", {"n": 2**70}),
    ],
    ids=["integer key", "date", "binary", "nan", "huge integer"],
)
def test_exotic_yaml_in_an_accepted_spec_loads_unchanged(value: str, expected: dict[str, Any] | None) -> None:
    # A ContainerSource accepts and ignores Kubernetes-only pod fields, whatever YAML typed them as.
    result = load_text(CONTAINER_SOURCE % value, file="c.yaml")
    assert result.problems == []
    [source] = result.resources
    assert not isinstance(source.spec, FrozenSpec)
    selector = source.spec["template"]["spec"]["nodeSelector"]
    if expected is None:
        assert math.isnan(selector["ratio"])
    else:
        assert selector == expected
    assert thaw(source.spec)["sink"] == {"uri": "http://127.0.0.1:9/sink"}


def test_plain_yaml_in_the_same_spec_is_compact() -> None:
    [source] = load_text(CONTAINER_SOURCE % "disk: ssd", file="c.yaml").resources
    assert isinstance(source.spec, FrozenSpec)
    assert source.spec["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}


def test_empty_annotations_and_labels_are_one_shared_read_only_map() -> None:
    first, second = load_trigger(ORDERED, "a"), load_trigger(ORDERED, "b")
    assert first.annotations == {} and first.labels == {}
    assert first.annotations is second.annotations is first.labels
    assert isinstance(first.annotations, Mapping)
    with pytest.raises(TypeError):
        first.annotations["x"] = "y"  # type: ignore[index]


def test_equal_strings_are_shared_across_the_files_of_one_load(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(trigger_yaml(name, ORDERED))
    first, second = load_paths([str(tmp_path)]).resources
    assert isinstance(first, Trigger) and isinstance(second, Trigger)
    assert first.broker is second.broker
    assert first.api_version is second.api_version


def test_strings_are_not_interned_in_the_interpreter() -> None:
    unique = f"t-{uuid.uuid4().hex}"
    trigger = load_trigger(ORDERED, unique)
    assert trigger.name == unique
    # Interning an equal copy returns the copy unless the loaded string is already interned.
    copy = "".join(list(unique))
    assert sys.intern(copy) is copy
    assert trigger.name is not copy


def test_parse_shares_strings_through_the_table_it_is_given() -> None:
    table: dict[str, str] = {}
    [first] = parse("a: shared-value\n", table)
    [second] = parse("b: shared-value\n", table)
    assert first.data["a"] is second.data["b"]
    assert table["shared-value"] is first.data["a"]


def test_origin_keeps_file_index_and_line() -> None:
    origin = Origin(file="a.yaml", index=300, line=12_345)
    assert (origin.file, origin.index, origin.line, origin.where) == ("a.yaml", 300, 12_345, "a.yaml:12345")
    unknown = Origin(file="b.yaml", index=2, line=None)
    assert unknown.line is None and unknown.where == "b.yaml"
    assert origin == Origin(file="a.yaml", index=300, line=12_345) != unknown
    assert hash(origin) == hash(Origin(file="a.yaml", index=300, line=12_345))
    assert repr(unknown) == "Origin(file='b.yaml', index=2, line=None)"
    with pytest.raises(AttributeError):
        origin.file = "c.yaml"
    with pytest.raises(ValueError):
        Origin(file="a.yaml", index=1, line=0)


def test_subscriber_is_read_from_the_spec_as_the_loader_accepted_it() -> None:
    trigger = load_trigger(ORDERED)
    assert "subscriber" not in {f.name for f in dataclasses.fields(trigger)}
    assert trigger.subscriber == Destination(uri="http://127.0.0.1:9/t")
    assert trigger.subscriber is not trigger.subscriber  # a new value on each read
    ref = load_trigger(
        "broker: default\n"
        "subscriber: {ref: {apiVersion: v1, kind: Service, name: svc, namespace: other}, uri: x/y}\n"
    )
    assert ref.subscriber == Destination(
        ref=KRef(api_version="v1", kind="Service", name="svc", namespace="other"), uri="x/y"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"uri": "http://h/x"},
        {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}},
        {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s", "namespace": ""}, "uri": ""},
        {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s", "namespace": "n"}, "uri": "?q=1"},
        {"uri": "https://h:8443/x?y=1#z", "ref": None},
    ],
)
def test_an_accepted_destination_reads_back_as_validated(value: dict[str, Any]) -> None:
    problems = Problems()
    checked = destination(value, "spec.subscriber", problems, required=True)
    assert problems.items == [] and checked is not None
    assert accepted_destination(value) == checked
