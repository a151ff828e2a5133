"""Trigger filters: matching semantics, ``required`` promises, validation, cesql wiring."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from broker.errors import ManifestError
from broker.event import AttrValue, Event
from triggers.filters import FilterProblem, check_filters, compile_trigger_filter
from triggers.filters.attributes import AttributesFilter

BASE: dict[str, AttrValue] = {
    "specversion": "1.0",
    "id": "1",
    "source": "/shop/orders",
    "type": "com.example.order.created",
}


def ev(**overrides: AttrValue | None) -> Event:
    """The base event with attributes replaced; ``None`` removes one."""
    attrs = dict(BASE)
    for name, value in overrides.items():
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
    return Event(attrs)


T = "com.example.order.created"
ATTR = "attributes"

# (id, spec.filter, spec.filters, event, expected)
MATCH_ROWS: list[tuple[str, Any, Any, Event, bool]] = [
    # no filter / empty legacy filter
    ("none", None, None, ev(), True),
    ("filter-empty", {}, None, ev(), True),
    ("attributes-null", {ATTR: None}, None, ev(), True),
    ("attributes-empty", {ATTR: {}}, None, ev(), True),
    # legacy exact entries
    ("legacy-type", {ATTR: {"type": T}}, None, ev(), True),
    ("legacy-type-mismatch", {ATTR: {"type": "other"}}, None, ev(), False),
    ("legacy-case-sensitive", {ATTR: {"type": T.upper()}}, None, ev(), False),
    ("legacy-and", {ATTR: {"type": T, "source": "/shop/orders"}}, None, ev(), True),
    ("legacy-and-one-fails", {ATTR: {"type": T, "source": "/shop"}}, None, ev(), False),
    ("legacy-ext", {ATTR: {"tenant": "acme"}}, None, ev(tenant="acme"), True),
    ("legacy-ext-mismatch", {ATTR: {"tenant": "acme"}}, None, ev(tenant="other"), False),
    ("legacy-ext-absent", {ATTR: {"tenant": "acme"}}, None, ev(), False),
    ("legacy-int-ext", {ATTR: {"count": "5"}}, None, ev(count=5), True),
    ("legacy-bool-ext", {ATTR: {"flag": "true"}}, None, ev(flag=True), True),
    ("legacy-bool-ext-case", {ATTR: {"flag": "True"}}, None, ev(flag=True), False),
    ("legacy-bool-false", {ATTR: {"flag": "false"}}, None, ev(flag=False), True),
    # legacy "" = any value of a present attribute (SPEC), never an absent one
    ("legacy-empty-present", {ATTR: {"tenant": ""}}, None, ev(tenant="acme"), True),
    ("legacy-empty-present-empty", {ATTR: {"tenant": ""}}, None, ev(tenant=""), True),
    ("legacy-empty-absent", {ATTR: {"tenant": ""}}, None, ev(), False),
    ("legacy-empty-subject-absent", {ATTR: {"subject": ""}}, None, ev(), False),
    ("legacy-empty-subject-present", {ATTR: {"subject": ""}}, None, ev(subject="x"), True),
    ("legacy-empty-int", {ATTR: {"count": ""}}, None, ev(count=0), True),
    ("legacy-empty-and-exact", {ATTR: {"subject": "", "type": T}}, None, ev(subject="s"), True),
    ("legacy-empty-and-exact-fails", {ATTR: {"subject": "", "type": "x"}}, None, ev(subject="s"), False),
    # which filter applies
    ("filters-override-filter", {ATTR: {"type": "x"}}, [{"exact": {"type": T}}], ev(), True),
    ("filters-override-filter-fail", {ATTR: {"type": T}}, [{"exact": {"type": "x"}}], ev(), False),
    ("filters-empty-list-legacy", {ATTR: {"type": "x"}}, [], ev(), False),
    ("filters-empty-list", None, [], ev(), True),
    ("filters-neutral-only-legacy-ignored", {ATTR: {"type": "x"}}, [{}], ev(), True),
    # exact
    ("exact", None, [{"exact": {"type": T}}], ev(), True),
    ("exact-mismatch", None, [{"exact": {"type": T + "x"}}], ev(), False),
    ("exact-case", None, [{"exact": {"source": "/SHOP/orders"}}], ev(), False),
    ("exact-absent", None, [{"exact": {"subject": "a"}}], ev(), False),
    ("exact-multi", None, [{"exact": {"type": T, "subject": "a"}}], ev(subject="a"), True),
    ("exact-multi-fail", None, [{"exact": {"type": T, "subject": "a"}}], ev(subject="b"), False),
    ("exact-int", None, [{"exact": {"seq": "10"}}], ev(seq=10), True),
    ("exact-bool", None, [{"exact": {"flag": "false"}}], ev(flag=False), True),
    # prefix / suffix
    ("prefix", None, [{"prefix": {"type": "com.example."}}], ev(), True),
    ("prefix-whole", None, [{"prefix": {"type": T}}], ev(), True),
    ("prefix-mismatch", None, [{"prefix": {"type": "org."}}], ev(), False),
    ("prefix-case", None, [{"prefix": {"type": "COM."}}], ev(), False),
    ("prefix-absent", None, [{"prefix": {"subject": "a"}}], ev(), False),
    ("prefix-int", None, [{"prefix": {"seq": "12"}}], ev(seq=123), True),
    ("prefix-multi", None, [{"prefix": {"type": "com.", "source": "/shop"}}], ev(), True),
    ("prefix-multi-fail", None, [{"prefix": {"type": "com.", "source": "/x"}}], ev(), False),
    ("suffix", None, [{"suffix": {"type": ".created"}}], ev(), True),
    ("suffix-mismatch", None, [{"suffix": {"type": ".deleted"}}], ev(), False),
    ("suffix-case", None, [{"suffix": {"type": ".Created"}}], ev(), False),
    ("suffix-absent", None, [{"suffix": {"subject": "a"}}], ev(), False),
    ("suffix-bool", None, [{"suffix": {"flag": "ue"}}], ev(flag=True), True),
    # the list is an implicit all
    ("list-and", None, [{"prefix": {"type": "com."}}, {"suffix": {"type": ".created"}}], ev(), True),
    ("list-and-fail", None, [{"prefix": {"type": "com."}}, {"suffix": {"type": ".x"}}], ev(), False),
    # all / any / not
    ("all", None, [{"all": [{"exact": {"type": T}}, {"prefix": {"source": "/shop"}}]}], ev(), True),
    ("all-fail", None, [{"all": [{"exact": {"type": T}}, {"prefix": {"source": "/x"}}]}], ev(), False),
    ("any", None, [{"any": [{"exact": {"type": "x"}}, {"exact": {"type": T}}]}], ev(), True),
    ("any-fail", None, [{"any": [{"exact": {"type": "x"}}, {"exact": {"type": "y"}}]}], ev(), False),
    ("not", None, [{"not": {"exact": {"type": "x"}}}], ev(), True),
    ("not-fail", None, [{"not": {"exact": {"type": T}}}], ev(), False),
    ("not-absent", None, [{"not": {"exact": {"subject": "a"}}}], ev(), True),
    ("not-not", None, [{"not": {"not": {"exact": {"type": T}}}}], ev(), True),
    (
        "nested",
        None,
        [{"any": [{"all": [{"exact": {"type": "x"}}]}, {"not": {"suffix": {"source": "/x"}}}]}],
        ev(),
        True,
    ),
    (
        "nested-fail",
        None,
        [{"all": [{"any": [{"exact": {"type": "x"}}, {"exact": {"source": "y"}}]}, {"exact": {"type": T}}]}],
        ev(),
        False,
    ),
    # neutral elements (Knative NoFilter): pass alone, ignored inside all/any/not
    ("neutral", None, [{}], ev(), True),
    ("neutral-with-fail", None, [{}, {"exact": {"type": "x"}}], ev(), False),
    ("neutral-exact-empty", None, [{"exact": {}}], ev(), True),
    ("neutral-cesql-empty", None, [{"cesql": ""}], ev(), True),
    ("neutral-not", None, [{"not": {}}], ev(), True),
    ("neutral-not-not", None, [{"not": {"not": {}}}], ev(), True),
    ("neutral-all", None, [{"all": [{}]}], ev(), True),
    ("neutral-any", None, [{"any": [{}]}], ev(), True),
    ("neutral-in-any", None, [{"any": [{}, {"exact": {"type": "x"}}]}], ev(), False),
    ("neutral-in-all", None, [{"all": [{}, {"exact": {"type": T}}]}], ev(), True),
    ("neutral-null-dialect", None, [{"exact": None}], ev(), True),
    ("data-never-filtered", {ATTR: {"data": "x"}}, None, Event(dict(BASE), b"x"), False),
]


@pytest.mark.parametrize(
    ("spec_filter", "spec_filters", "event", "expected"),
    [r[1:] for r in MATCH_ROWS],
    ids=[r[0] for r in MATCH_ROWS],
)
def test_matches(spec_filter: Any, spec_filters: Any, event: Event, expected: bool) -> None:
    assert check_filters(spec_filter, spec_filters) == []
    flt = compile_trigger_filter(spec_filter, spec_filters, trigger="ns/t")
    assert flt.matches(event) is expected
    if expected:  # `required` is a promise about every accepted event
        assert all(event.text(k) == v for k, v in flt.required.items())


# (id, spec.filter, spec.filters, expected required)
REQUIRED_ROWS: list[tuple[str, Any, Any, dict[str, str]]] = [
    ("none", None, None, {}),
    ("legacy", {ATTR: {"type": "a", "subject": ""}}, None, {"type": "a"}),
    ("exact", None, [{"exact": {"type": "a", "source": "s"}}], {"type": "a", "source": "s"}),
    ("prefix", None, [{"prefix": {"type": "a"}}], {}),
    ("suffix", None, [{"suffix": {"type": "a"}}], {}),
    ("any", None, [{"any": [{"exact": {"type": "a"}}, {"exact": {"type": "a"}}]}], {}),
    ("not", None, [{"not": {"exact": {"type": "a"}}}], {}),
    (
        "list-union",
        None,
        [{"exact": {"type": "a"}}, {"prefix": {"source": "s"}}, {"exact": {"x": "1"}}],
        {"type": "a", "x": "1"},
    ),
    (
        "all-union",
        None,
        [{"all": [{"exact": {"type": "a"}}, {"exact": {"source": "s"}}]}],
        {"type": "a", "source": "s"},
    ),
    (
        "all-conflict",
        None,
        [{"all": [{"exact": {"type": "a", "x": "1"}}, {"exact": {"type": "b"}}]}],
        {"x": "1"},
    ),
    (
        "nested-all",
        None,
        [{"exact": {"type": "a"}}, {"all": [{"exact": {"source": "s"}}]}],
        {"type": "a", "source": "s"},
    ),
    ("filters-override", {ATTR: {"type": "a"}}, [{"prefix": {"type": "b"}}], {}),
]


@pytest.mark.parametrize(
    ("spec_filter", "spec_filters", "expected"),
    [r[1:] for r in REQUIRED_ROWS],
    ids=[r[0] for r in REQUIRED_ROWS],
)
def test_required(spec_filter: Any, spec_filters: Any, expected: dict[str, str]) -> None:
    flt = compile_trigger_filter(spec_filter, spec_filters, trigger="ns/t")
    assert dict(flt.required) == expected


NAME = "attribute name must match ^[a-z][a-z0-9]*$"
MULTI = "multiple dialects found, filters can have only one dialect set"


def _deep_not(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"exact": {"type": "a"}}
    for _ in range(depth):
        spec = {"not": spec}
    return spec


# (id, spec.filter, spec.filters, [(path, reason fragment), ...])
PROBLEM_ROWS: list[tuple[str, Any, Any, list[tuple[str, str]]]] = [
    ("valid-none", None, None, []),
    ("valid-legacy", {ATTR: {"type": "a", "subject": "", "ext1": "x"}}, None, []),
    ("valid-filters", None, [{"exact": {"type": "a"}}, {"any": [{"prefix": {"type": "b"}}, {}]}], []),
    ("valid-empty-dialect-not-counted", None, [{"exact": {}, "prefix": {"type": "a"}}], []),
    ("valid-null-dialect-not-counted", None, [{"exact": None, "not": {"exact": {"type": "a"}}}], []),
    ("valid-deep", None, [_deep_not(32)], []),
    ("legacy-not-object", "type=a", None, [("spec.filter", "must be an object")]),
    ("legacy-unknown-field", {"expression": "x"}, None, [("spec.filter.expression", "unknown field")]),
    ("legacy-exact-in-filter", {"exact": {"type": "a"}}, None, [("spec.filter.exact", "unknown field")]),
    ("legacy-not-map", {ATTR: ["type"]}, None, [("spec.filter.attributes", "must be a map")]),
    ("legacy-upper", {ATTR: {"Type": "a"}}, None, [("spec.filter.attributes.Type", NAME)]),
    ("legacy-dash", {ATTR: {"my-ext": "a"}}, None, [("spec.filter.attributes.my-ext", NAME)]),
    ("legacy-digit-first", {ATTR: {"9a": "a"}}, None, [("spec.filter.attributes.9a", NAME)]),
    ("legacy-empty-name", {ATTR: {"": "a"}}, None, [("spec.filter.attributes.", NAME)]),
    ("legacy-int-value", {ATTR: {"count": 5}}, None, [("spec.filter.attributes.count", "must be a string")]),
    ("legacy-null-value", {ATTR: {"subject": None}}, None, [("spec.filter.attributes.subject", "string")]),
    ("filters-not-list", None, {"exact": {"type": "a"}}, [("spec.filters", "must be a list")]),
    ("element-not-object", None, ["exact"], [("spec.filters[0]", "must be a filter object")]),
    (
        "multi-dialect",
        None,
        [{"exact": {"type": "a"}, "suffix": {"type": "b"}}],
        [("spec.filters[0]", MULTI)],
    ),
    ("multi-dialect-not", None, [{"not": {}, "all": [{}]}], [("spec.filters[0]", MULTI)]),
    ("exact-upper", None, [{}, {"exact": {"Type": "a"}}], [("spec.filters[1].exact.Type", NAME)]),
    (
        "exact-empty-value",
        None,
        [{"exact": {"type": ""}}],
        [("spec.filters[0].exact.type", "must not be empty")],
    ),
    (
        "prefix-int-value",
        None,
        [{"prefix": {"seq": 1}}],
        [("spec.filters[0].prefix.seq", "must be a string")],
    ),
    (
        "suffix-empty-value",
        None,
        [{"suffix": {"type": ""}}],
        [("spec.filters[0].suffix.type", "not be empty")],
    ),
    ("exact-not-map", None, [{"exact": "type"}], [("spec.filters[0].exact", "must be a map")]),
    ("all-empty", None, [{"all": []}], [("spec.filters[0].all", "at least one filter")]),
    ("any-empty", None, [{"any": []}], [("spec.filters[0].any", "at least one filter")]),
    ("any-not-list", None, [{"any": {"exact": {"type": "a"}}}], [("spec.filters[0].any", "must be a list")]),
    ("not-list", None, [{"not": [{"exact": {"type": "a"}}]}], [("spec.filters[0].not", "single filter")]),
    ("unknown-dialect", None, [{"sql": "x"}], [("spec.filters[0].sql", "unknown dialect 'sql'")]),
    ("cesql-not-string", None, [{"cesql": 5}], [("spec.filters[0].cesql", "must be a string")]),
    (
        "nested-path",
        None,
        [{"all": [{"exact": {"type": "a"}}, {"any": [{"exact": {"Bad": "x"}}]}]}],
        [("spec.filters[0].all[1].any[0].exact.Bad", NAME)],
    ),
    ("nested-not", None, [{"not": {"suffix": {"type": ""}}}], [("spec.filters[0].not.suffix.type", "empty")]),
    (
        "nested-multi",
        None,
        [{"any": [{"prefix": {"a": "b"}, "all": [{}]}]}],
        [("spec.filters[0].any[0]", MULTI)],
    ),
    ("too-deep", None, [_deep_not(40)], [("spec.filters[0]" + ".not" * 33, "nested deeper than 32")]),
    (
        "several",
        {ATTR: {"A": 1}},
        [{"exact": {"type": ""}}, {"all": []}],
        [
            ("spec.filter.attributes.A", NAME),
            ("spec.filter.attributes.A", "must be a string"),
            ("spec.filters[0].exact.type", "must not be empty"),
            ("spec.filters[1].all", "at least one filter"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("spec_filter", "spec_filters", "expected"),
    [r[1:] for r in PROBLEM_ROWS],
    ids=[r[0] for r in PROBLEM_ROWS],
)
def test_check_filters(spec_filter: Any, spec_filters: Any, expected: list[tuple[str, str]]) -> None:
    problems = check_filters(spec_filter, spec_filters)
    assert [p.path for p in problems] == [path for path, _ in expected], problems
    for problem, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.reason
        assert str(problem) == f"{problem.path}: {problem.reason}"


@pytest.mark.parametrize(
    ("spec_filter", "spec_filters"),
    [({"attributes": "x"}, None), (None, [{"exact": "type"}]), (None, "exact"), ("x", None)],
)
def test_compile_rejects_what_check_rejects(spec_filter: Any, spec_filters: Any) -> None:
    if check_filters(spec_filter, spec_filters) == []:
        pytest.fail("row must be invalid")
    with pytest.raises(ManifestError) as info:
        compile_trigger_filter(spec_filter, spec_filters, trigger="ns/t")
    assert all(p.startswith("Trigger ns/t: spec.filter") for p in info.value.problems)


def test_problem_is_frozen_value() -> None:
    problem = FilterProblem(path="spec.filter", reason="must be an object")
    assert problem == FilterProblem(path="spec.filter", reason="must be an object")
    with pytest.raises(AttributeError):
        problem.path = "x"  # type: ignore[misc]


# --- cesql wiring ------------------------------------------------------------------------------


def test_cesql_without_engine_is_a_validation_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "triggers.filters.cesql", None)  # makes the import fail
    problems = check_filters(None, [{"exact": {"type": "a"}}, {"not": {"cesql": "type = 'a'"}}])
    assert problems == [
        FilterProblem(path="spec.filters[1].not.cesql", reason="cesql filters are not supported yet")
    ]
    with pytest.raises(ManifestError, match="not supported yet"):
        compile_trigger_filter(None, [{"cesql": "type = 'a'"}], trigger="ns/t")


CESQL_ROWS = [
    ("type = 'com.example.order.created'", ev(), True),
    ("type = 'com.example.order.created'", ev(type="x"), False),
    ("source LIKE '/shop/%' AND EXISTS subject", ev(subject="s"), True),
    ("source LIKE '/shop/%' AND EXISTS subject", ev(), False),
]


@pytest.mark.parametrize(("expression", "event", "expected"), CESQL_ROWS)
def test_cesql_dialect(expression: str, event: Event, expected: bool) -> None:
    pytest.importorskip("triggers.filters.cesql")
    spec = [{"cesql": expression}]
    assert check_filters(None, spec) == []
    assert compile_trigger_filter(None, spec, trigger="ns/t").matches(event) is expected
    negated = compile_trigger_filter(None, [{"not": {"cesql": expression}}], trigger="ns/t")
    assert negated.matches(event) is not expected


def test_cesql_parse_error_has_position() -> None:
    pytest.importorskip("triggers.filters.cesql")
    problems = check_filters(None, [{"any": [{"cesql": "type = "}]}])
    assert [p.path for p in problems] == ["spec.filters[0].any[0].cesql"]
    assert problems[0].reason.startswith("invalid CESQL expression at position ")


@pytest.mark.parametrize(
    ("attributes", "event", "expected"),
    [
        ({}, ev(), True),
        ({"type": T}, ev(), True),
        ({"type": "other"}, ev(), False),
        ({"subject": ""}, ev(), False),
        ({"subject": "", "type": T}, ev(subject=""), True),
        ({"source": "/shop/orders", "type": T, "count": "3"}, ev(count=3), True),
        ({"source": "/shop/orders", "type": T, "count": "3"}, ev(count=4), False),
    ],
)
def test_attributes_filter_built_directly(attributes: dict[str, str], event: Event, expected: bool) -> None:
    flt = AttributesFilter(attributes)
    assert flt.matches(event) is expected
    assert dict(flt.required) == {k: v for k, v in attributes.items() if v}
    # Exact entries come first in evaluation order, presence-only ones after.
    shown = {k: v for k, v in attributes.items() if v} | {k: v for k, v in attributes.items() if not v}
    assert repr(flt) == f"AttributesFilter({shown!r})"
