"""The Trigger index returns exactly the Triggers whose filters accept an event.

Besides a hand-written table, a fixed-seed property check builds random filter specs and events
and compares (a) the index against a brute-force scan of the compiled filters and (b) every
compiled filter against a direct, tri-state reading of the Knative rules (``_oracle``).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from broker.event import AttrValue, Event, canonical
from triggers.filters import compile_trigger_filter
from triggers.filters.base import Filter
from triggers.index import IndexBuilder, TriggerIndex


def ev(**attrs: AttrValue) -> Event:
    return Event({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **attrs})


def index_of(specs: dict[str, tuple[Any, Any]]) -> tuple[TriggerIndex, dict[str, Filter]]:
    filters = {name: compile_trigger_filter(f, fs, trigger=name) for name, (f, fs) in specs.items()}
    return TriggerIndex(filters), filters


TABLE: dict[str, tuple[Any, Any]] = {
    "ns/all": (None, None),
    "ns/empty-list": (None, [{}]),
    "ns/t": ({"attributes": {"type": "t"}}, None),
    "ns/u": ({"attributes": {"type": "u"}}, None),
    "ns/t-s": (None, [{"exact": {"type": "t", "source": "/s"}}]),
    "ns/t-other-source": (None, [{"exact": {"type": "t", "source": "/other"}}]),
    "ns/source-only": ({"attributes": {"source": "/s"}}, None),
    "ns/t-subject": ({"attributes": {"type": "t", "subject": ""}}, None),
    "ns/prefix": (None, [{"prefix": {"type": "t"}}]),
    "ns/not-u": (None, [{"not": {"exact": {"type": "u"}}}]),
    "ns/any": (None, [{"any": [{"exact": {"type": "u"}}, {"exact": {"source": "/s"}}]}]),
    "ns/ext": ({"attributes": {"count": "3"}}, None),
}

TABLE_ROWS = [
    (
        ev(),
        {"ns/all", "ns/empty-list", "ns/t", "ns/t-s", "ns/source-only", "ns/prefix", "ns/not-u", "ns/any"},
    ),
    (
        ev(subject="x", count=3),
        {
            "ns/all",
            "ns/empty-list",
            "ns/t",
            "ns/t-s",
            "ns/source-only",
            "ns/t-subject",
            "ns/prefix",
            "ns/not-u",
            "ns/any",
            "ns/ext",
        },
    ),
    (ev(type="u", source="/x"), {"ns/all", "ns/empty-list", "ns/u", "ns/any"}),
    (ev(type="tt", source="/other"), {"ns/all", "ns/empty-list", "ns/prefix", "ns/not-u"}),
]


@pytest.mark.parametrize(("event", "expected"), TABLE_ROWS)
def test_table(event: Event, expected: set[str]) -> None:
    index, _ = index_of(TABLE)
    names = index.match(event)
    assert len(names) == len(set(names))
    assert set(names) == expected


def test_empty_index() -> None:
    index = TriggerIndex({})
    assert index.match(ev()) == []
    assert len(index) == 0


# --- property check ----------------------------------------------------------------------------

ATTRS = ("type", "source", "subject", "x")
VALUES = ("a", "b", "a.b", "b.a", "1", "true")


def _text_test(dialect: str, text: str | None, want: str) -> bool:
    if text is None:
        return False
    if dialect == "exact":
        return text == want
    return text.startswith(want) if dialect == "prefix" else text.endswith(want)


def _oracle_element(spec: dict[str, Any], event: Event) -> bool | None:
    """Knative tri-state: True = Pass, False = Fail, None = NoFilter (neutral)."""
    for dialect, body in spec.items():
        if not body and dialect != "not":
            continue
        if dialect in ("exact", "prefix", "suffix"):
            return all(_text_test(dialect, event.text(k), v) for k, v in body.items())
        if dialect in ("all", "any"):
            results = [r for r in (_oracle_element(c, event) for c in body) if r is not None]
            if not results:
                return None
            return all(results) if dialect == "all" else any(results)
        if dialect == "not":
            inner = _oracle_element(body, event)
            return None if inner is None else not inner
    return None


def _oracle(spec_filter: Any, spec_filters: Any, event: Event) -> bool:
    if spec_filters:
        return _oracle_element({"all": spec_filters}, event) is not False
    attributes = (spec_filter or {}).get("attributes") or {}
    for name, want in attributes.items():
        value = event.get(name)
        if value is None or (want != "" and canonical(value) != want):
            return False
    return True


def _random_element(rng: random.Random, depth: int) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        return {}
    if depth < 3 and roll < 0.35:
        dialect = rng.choice(("all", "any", "not"))
        if dialect == "not":
            return {"not": _random_element(rng, depth + 1)}
        return {dialect: [_random_element(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    dialect = rng.choice(("exact", "exact", "exact", "prefix", "suffix"))
    names = rng.sample(ATTRS, rng.choice((1, 1, 1, 2)))
    return {dialect: {n: rng.choice(VALUES) for n in names}}


def _random_spec(rng: random.Random) -> tuple[Any, Any]:
    roll = rng.random()
    if roll < 0.03:
        return None, None
    if roll < 0.45:
        names = rng.sample(ATTRS, rng.choice((0, 1, 1, 2, 3)))
        return {"attributes": {n: rng.choice((*VALUES, "")) for n in names}}, None
    legacy = {"attributes": {"type": rng.choice(VALUES)}} if rng.random() < 0.1 else None
    return legacy, [_random_element(rng, 0) for _ in range(rng.randint(1, 3))]


def _random_event(rng: random.Random) -> Event:
    attrs: dict[str, AttrValue] = {
        "specversion": "1.0",
        "id": "1",
        "type": rng.choice(VALUES),
        "source": rng.choice(VALUES),
    }
    if rng.random() < 0.5:
        attrs["subject"] = rng.choice((*VALUES, ""))
    if rng.random() < 0.6:
        attrs["x"] = rng.choice((*VALUES, "", 1, 10, True, False))
    return Event(attrs)


def test_index_equals_brute_force_and_oracle() -> None:
    rng = random.Random(20240607)
    specs = {f"ns/t{i}": _random_spec(rng) for i in range(400)}
    index, filters = index_of(specs)
    events = [_random_event(rng) for _ in range(400)]
    matched = 0
    for event in events:
        brute = {name for name, flt in filters.items() if flt.matches(event)}
        oracle = {name for name, (f, fs) in specs.items() if _oracle(f, fs, event)}
        names = index.match(event)
        assert len(names) == len(set(names))
        assert set(names) == brute == oracle, event
        for name in brute:
            assert all(event.text(k) == v for k, v in filters[name].required.items())
        matched += len(brute)
    # The generated table must exercise both outcomes in earnest.
    assert 0.05 < matched / (len(specs) * len(events)) < 0.6


def test_building_ten_thousand_triggers_is_fast() -> None:
    filters = {
        f"ns/t{i}": compile_trigger_filter(
            None, [{"exact": {"type": f"type.{i % 2000}", "source": f"/s{i}"}}], trigger=f"ns/t{i}"
        )
        for i in range(10_000)
    }
    start = time.perf_counter()
    index = TriggerIndex(filters)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5
    assert len(index) == 10_000
    assert index.match(ev(type="type.7", source="/s7")) == ["ns/t7"]
    assert index.match(ev(type="type.7", source="/s8")) == []


def test_repr_counts_each_type_once() -> None:
    index, _ = index_of(TABLE)
    # t (alone and with sources) and u: two types; prefix, not-u, any and ext are unindexed.
    assert repr(index) == "TriggerIndex(triggers=12, types=2, unindexed=4, match_all=2)"


def test_filters_decided_by_their_key_are_kept_by_name_only() -> None:
    # An exact type (or type and source) filter checks nothing the lookup has not: the index
    # keeps the name alone and never calls it, with the same answers as evaluating it.
    specs: dict[str, tuple[Any, Any]] = {
        "ns/a": ({"attributes": {"type": "t"}}, None),
        "ns/b": (None, [{"exact": {"type": "t"}}]),
        "ns/c": ({"attributes": {"type": "t", "subject": ""}}, None),
        "ns/d": (None, [{"exact": {"type": "u", "source": "/s"}}]),
        "ns/e": ({"attributes": {"type": "v"}}, None),
        "ns/f": ({"attributes": {"type": "t", "subject": "x"}}, None),
    }
    index, filters = index_of(specs)
    assert index._by_type["v"] == "ns/e"
    assert index._by_type_source["u"]["/s"] == "ns/d"
    group = index._by_type["t"]
    assert group[:2] == ("ns/a", "ns/b") and [item[0] for item in group[2:]] == ["ns/c", "ns/f"]
    for event in (ev(), ev(subject="x"), ev(type="u"), ev(type="v"), ev(type="u", source="/x")):
        expected = [name for name, flt in filters.items() if flt.matches(event)]
        assert sorted(index.match(event)) == sorted(expected)


def test_exact_only_is_whether_every_attribute_entry_has_a_value() -> None:
    assert getattr(compile_trigger_filter({"attributes": {"type": "t", "source": "/s"}}, None, trigger=""),
                   "exact_only", False)
    assert not getattr(compile_trigger_filter({"attributes": {"type": "t", "subject": ""}}, None, trigger=""),
                       "exact_only", False)
    assert getattr(compile_trigger_filter(None, [{"exact": {"type": "t"}}], trigger=""), "exact_only", False)


def test_builder_files_one_filter_at_a_time_like_the_mapping_constructor() -> None:
    _, filters = index_of(TABLE)
    builder = IndexBuilder()
    for name, flt in filters.items():
        builder.add(name, flt)
    built, whole = builder.build(), TriggerIndex(filters)
    assert repr(built) == repr(whole) and len(built) == len(whole) == len(TABLE)
    for event, _ in TABLE_ROWS:
        assert built.match(event) == whole.match(event)
