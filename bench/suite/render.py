"""Markdown for ``bench/RESULTS.md``: record tables, target tables, and a scenario's section."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bench.suite.checks import Check, Outcome
from bench.suite.profiler import render as render_profile

Column = tuple[str, str, str]
"""(header, record key, format): format is a ``format()`` spec, or ``pct`` / ``yn``."""

STEP_COLUMNS: tuple[Column, ...] = (
    ("target", "target", ""),
    ("payload B", "payload", ",d"),
    ("offered ev/s", "offered", ",.0f"),
    ("achieved ev/s", "achieved", ",.0f"),
    ("loss", "loss", ",d"),
    ("dup", "dup", ",d"),
    ("p50 ms", "p50", ".2f"),
    ("p99 ms", "p99", ".2f"),
    ("p99.9 ms", "p999", ".2f"),
    ("max ms", "max", ".1f"),
    ("SUT CPU µs/event", "sut_cpu_us_per_event", ",.0f"),
    ("RSS MB", "rss_mb", ".0f"),
    ("SUT core busy", "sut_core_busy", "pct"),
    ("of it not SUT", "other_on_sut_core", "pct"),
    ("load core busy", "load_core_busy", "pct"),
    ("gen lag p99 ms", "gen_lag_p99_ms", ".1f"),
    ("sustained", "sustained", "yn"),
)


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec == "yn":
        return "yes" if value else "**no**"
    if spec == "pct":
        return f"{float(value):.0%}"
    if spec.endswith("d") and isinstance(value, float):
        value = round(value)
    return format(value, spec) if spec else str(value)


def table(records: Iterable[dict[str, Any]], columns: Sequence[Column]) -> str:
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        lines.append("| " + " | ".join(fmt(record.get(key), spec) for _, key, spec in columns) + " |")
    return "\n".join(lines)


def checks_table(checks: Sequence[Check]) -> str:
    lines = ["| issue target | measured | bar | verdict |", "|---|---|---|---|"]
    for c in checks:
        value = "–" if c.value is None else _value(c.value, c.unit)
        verdict = c.verdict if c.met is not False else f"**NOT met** ({c.gap})"
        lines.append(f"| {c.what} | {value} | {c.bar} | {verdict} |")
    return "\n".join(lines)


def _value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.1f}%"
    return (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}") + (f" {unit}" if unit else "")


def section(outcome: Outcome, *, command: str, when: str, setup: str) -> str:
    """The whole section body of one scenario."""
    parts = [f"Command: `{command}` — {when}. {setup}"]
    if outcome.baselines:
        parts.append("Baselines measured in this run: " + "; ".join(_baseline(k, v) for k, v in
                                                                    outcome.baselines.items()) + ".")
    if outcome.ratios:
        shown = [f"{k} = {'–' if v is None else f'{v:.2f}x'}" for k, v in outcome.ratios.items()]
        parts.append("Ratios: " + "; ".join(shown) + ".")
    parts.extend(outcome.body)
    if outcome.checks:
        parts.append(checks_table(outcome.checks))
    if outcome.notes:
        parts.append("\n".join(f"- {n}" for n in outcome.notes))
    for title, summary in outcome.profiles.items():
        parts.append(render_profile(summary, title))
    return "\n\n".join(parts)


def _baseline(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name} {fmt(value, ',.2f' if value < 100 else ',.0f')}"
    return f"{name} {value}"
