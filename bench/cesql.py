"""CESQL engine benchmark, in-process on one core.

``python -m bench.cesql [--write]`` measures, for
``type LIKE 'com.example.%' AND source = '/orders' AND EXISTS subject``:

* evaluations per second of :meth:`triggers.cesql.Expression.evaluate` (which builds a
  :class:`~triggers.cesql.Result`) on a matching event and on events failing each term
  (target: 200,000/s or more);
* µs per event of the Trigger's compiled filter (``filters: [{cesql: …}]`` through
  :func:`triggers.filters.compile_trigger_filter`), next to the same Trigger written with
  ``prefix``/``exact`` dialects. Those cannot say ``EXISTS subject``, so that comparison drops the
  term on both sides;
* the error path: a term naming an attribute the event lacks (a MissingAttributeError, counted on
  ``weir_cesql_evaluation_errors_total``);
* µs to compile the expression (paid once per Trigger load).

Timings are the best of several repeats (least disturbed by other work on the machine).
``--write`` also records the table in ``bench/RESULTS.md``.
"""

from __future__ import annotations

from typing import Any

from bench.report import report_cli
from bench.timing import per_call_us
from broker.event import Event
from triggers.cesql import compile
from triggers.filters import compile_trigger_filter

EXPRESSION = "type LIKE 'com.example.%' AND source = '/orders' AND EXISTS subject"
WITHOUT_EXISTS = "type LIKE 'com.example.%' AND source = '/orders'"
MISSING_ATTRIBUTE = "type LIKE 'com.example.%' AND tenant = 'acme'"
DIALECTS: list[dict[str, Any]] = [{"prefix": {"type": "com.example."}}, {"exact": {"source": "/orders"}}]
TARGET = 200_000


def _event(**overrides: str | None) -> Event:
    attributes: dict[str, str | None] = {
        "specversion": "1.0",
        "id": "42",
        "type": "com.example.order.created",
        "source": "/orders",
        "subject": "order-42",
        **overrides,
    }
    return Event({k: v for k, v in attributes.items() if v is not None})


EVENTS = {
    "matching": _event(),
    "other type (first term false)": _event(type="org.example.order.created"),
    "other source (second term false)": _event(source="/invoices"),
    "no subject (last term false)": _event(subject=None),
}



def evaluation_rows() -> list[str]:
    expression = compile(EXPRESSION)
    rows = []
    for label, event in EVENTS.items():
        us = per_call_us(lambda event=event: expression.evaluate(event))  # type: ignore[misc]
        verdict = "pass" if expression.evaluate(event).passes else "no match"
        mark = "✔" if 1e6 / us >= TARGET else "✘"
        rows.append(f"| {label} | {verdict} | {us:.2f} | {1e6 / us:,.0f} {mark} |")
    return rows


def filter_rows() -> list[str]:
    cesql = compile_trigger_filter(None, [{"cesql": EXPRESSION}], trigger="bench/cesql")
    short = compile_trigger_filter(None, [{"cesql": WITHOUT_EXISTS}], trigger="bench/cesql-short")
    dialects = compile_trigger_filter(None, DIALECTS, trigger="bench/dialects")
    missing = compile_trigger_filter(None, [{"cesql": MISSING_ATTRIBUTE}], trigger="bench/missing")
    rows = []
    for label, event in EVENTS.items():
        full_us = per_call_us(lambda event=event: cesql.matches(event))  # type: ignore[misc]
        short_us = per_call_us(lambda event=event: short.matches(event))  # type: ignore[misc]
        dialect_us = per_call_us(lambda event=event: dialects.matches(event))  # type: ignore[misc]
        rows.append(f"| {label} | {full_us:.2f} | {short_us:.2f} | {dialect_us:.2f} |")
    matching = EVENTS["matching"]
    error_us = per_call_us(lambda: missing.matches(matching))
    rows.append(f"| matching, `tenant = 'acme'` instead (missingAttribute error) | {error_us:.2f} | | |")
    return rows


def compile_us() -> float:
    return per_call_us(lambda: compile(EXPRESSION), budget=0.1, repeats=3)


def report() -> str:
    lines = [
        "Command: `python -m bench.cesql`. One core, in-process; best of 5.",
        "",
        f"`{EXPRESSION}`",
        "",
        f"| event | result | µs per evaluate() | evaluations/s (target {TARGET:,}) |",
        "|---|---|---:|---:|",
        *evaluation_rows(),
        "",
        "Trigger filter `matches()` µs per event (through `compile_trigger_filter`); the last two",
        f"columns drop `EXISTS subject`: `{WITHOUT_EXISTS}` vs `prefix` + `exact` dialects.",
        "",
        "| event | cesql (3 terms) | cesql (2 terms) | prefix + exact |",
        "|---|---:|---:|---:|",
        *filter_rows(),
        "",
        f"Compiling the expression: {compile_us():.0f} µs.",
    ]
    return "\n".join(lines)


def main() -> None:
    report_cli("CESQL engine", report, __doc__)


if __name__ == "__main__":
    main()
