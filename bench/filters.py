"""Trigger filter benchmark: the Trigger index against a naive scan, in-process.

``python -m bench.filters [--write]`` measures, for one Broker holding 1 matching Trigger plus
1,000 or 10,000 Triggers that do not match the event:

* µs per event for :class:`triggers.index.TriggerIndex` and for a naive scan calling every
  filter, in three shapes of non-matching Triggers: other ``type`` values (the common case),
  the same ``type`` but other ``source`` values (second index level), and ``prefix`` filters
  (nothing to index: the index degrades to the scan);
* bytes per 1,000 compiled Triggers (``tracemalloc``), per filter shape, and per 1,000 entries
  of the index itself;
* milliseconds to compile 10,000 Triggers and to build their index.

Timings are the best of several repeats (least disturbed by other work on the machine).
``--write`` also records the table in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import functools
import gc
import time
import tracemalloc
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from bench.report import report_cli
from bench.timing import per_call_us
from broker.event import Event
from triggers.filters import compile_trigger_filter
from triggers.filters.base import Filter
from triggers.index import TriggerIndex

TARGET_TYPE = "dev.weir.bench.order.created"
TARGET_SOURCE = "/bench/shop"
EVENT = Event(
    {
        "specversion": "1.0",
        "id": "42",
        "type": TARGET_TYPE,
        "source": TARGET_SOURCE,
        "subject": "order-42",
        "tenant": "acme",
    }
)
Spec = tuple[Any, Any]
T = TypeVar("T")


def other_type(i: int) -> Spec:
    if i % 2:
        return {"attributes": {"type": f"dev.weir.bench.other.{i}", "tenant": "acme"}}, None
    return None, [{"exact": {"type": f"dev.weir.bench.other.{i}"}}, {"prefix": {"subject": "order-"}}]


def other_source(i: int) -> Spec:
    return None, [{"exact": {"type": TARGET_TYPE, "source": f"/bench/other/{i}"}}]


def prefix_only(i: int) -> Spec:
    return None, [{"prefix": {"type": f"dev.weir.bench.other.{i}."}}]


def nested(i: int) -> Spec:
    return None, [
        {"exact": {"type": f"dev.weir.bench.other.{i}"}},
        {"any": [{"suffix": {"source": "/shop"}}, {"not": {"exact": {"tenant": f"t{i}"}}}]},
    ]


SHAPES: dict[str, Callable[[int], Spec]] = {
    "other type (legacy + exact)": other_type,
    "same type, other source": other_source,
    "prefix only (unindexable)": prefix_only,
}
MATCHING: Spec = ({"attributes": {"type": TARGET_TYPE, "source": TARGET_SOURCE}}, None)


def compile_all(specs: Mapping[str, Spec]) -> dict[str, Filter]:
    return {name: compile_trigger_filter(f, fs, trigger=name) for name, (f, fs) in specs.items()}


def build(shape: Callable[[int], Spec], others: int) -> dict[str, Filter]:
    specs = {f"bench/other-{i}": shape(i) for i in range(others)}
    specs["bench/match"] = MATCHING
    return compile_all(specs)



def match_rows() -> list[str]:
    rows = []
    for label, shape in SHAPES.items():
        for others in (1_000, 10_000):
            filters = build(shape, others)
            index = TriggerIndex(filters)
            items = tuple(filters.items())

            def naive(items: tuple[tuple[str, Filter], ...] = items) -> list[str]:
                return [name for name, flt in items if flt.matches(EVENT)]

            assert index.match(EVENT) == naive() == ["bench/match"]
            idx_us = per_call_us(functools.partial(index.match, EVENT))
            naive_us = per_call_us(naive)
            rows.append(
                f"| {label} | {others:,} | {idx_us:.2f} | {naive_us:,.1f} | {naive_us / idx_us:,.0f}× |"
            )
    return rows


def traced_bytes(make: Callable[[], T]) -> tuple[int, T]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    value = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, value


def memory_rows() -> list[str]:
    rows = []
    shapes = {**SHAPES, "nested all/any/not": nested}
    for label, shape in shapes.items():
        specs = {f"bench/t{i}": shape(i) for i in range(1_000)}
        size, filters = traced_bytes(functools.partial(compile_all, specs))
        rows.append(f"| compiled filters: {label} | {size / 1024:,.0f} KiB | {size / 1000:,.0f} B |")
        index_size, _ = traced_bytes(functools.partial(TriggerIndex, filters))
        rows.append(f"| index over them | {index_size / 1024:,.0f} KiB | {index_size / 1000:,.0f} B |")
    return rows


def build_rows() -> list[str]:
    specs = {f"bench/t{i}": other_type(i) for i in range(10_000)}
    start = time.perf_counter()
    filters = compile_all(specs)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    TriggerIndex(filters)
    indexed = time.perf_counter() - start
    return [
        f"| compile 10,000 Triggers | {compiled * 1e3:.0f} ms |",
        f"| build the index over them | {indexed * 1e3:.1f} ms |",
    ]


def report() -> str:
    lines = [
        "Command: `python -m bench.filters`. One event, 1 matching Trigger plus N that do not match;",
        "µs per event, best of 5.",
        "",
        "| non-matching Triggers | N | index µs | naive scan µs | speed-up |",
        "|---|---:|---:|---:|---:|",
        *match_rows(),
        "",
        "| memory (tracemalloc, 1,000 Triggers) | total | per Trigger |",
        "|---|---:|---:|",
        *memory_rows(),
        "",
        "| build | time |",
        "|---|---:|",
        *build_rows(),
    ]
    return "\n".join(lines)


def main() -> None:
    report_cli("Trigger filters and index", report, __doc__)


if __name__ == "__main__":
    main()
