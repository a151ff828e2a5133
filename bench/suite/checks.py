"""Issue targets as checks: the measured value, the bar, met or not, and by how much."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    what: str
    value: float | None
    """``None`` when the scenario could not measure it."""
    bar: str
    met: bool | None
    unit: str = ""
    gap: str = ""
    """For an unmet check: how far off, e.g. ``"short by 640 ev/s (32%)"``."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def _fmt(value: float, unit: str) -> str:
    if unit in ("x", "%"):
        return f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f}%"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def at_least(what: str, value: float | None, bar: float, unit: str = "") -> Check:
    if _missing(value):
        return Check(what=what, value=None, bar=f">= {_fmt(bar, unit)}", met=None, unit=unit)
    assert value is not None
    met = value >= bar
    gap = "" if met else f"short by {_fmt(bar - value, unit)} ({(bar - value) / bar:.0%})"
    return Check(what=what, value=value, bar=f">= {_fmt(bar, unit)}", met=met, unit=unit, gap=gap)


def at_most(what: str, value: float | None, bar: float, unit: str = "") -> Check:
    if _missing(value):
        return Check(what=what, value=None, bar=f"<= {_fmt(bar, unit)}", met=None, unit=unit)
    assert value is not None
    met = value <= bar
    share = f" ({(value - bar) / bar:.0%})" if bar else ""
    gap = "" if met else f"over by {_fmt(value - bar, unit)}{share}"
    return Check(what=what, value=value, bar=f"<= {_fmt(bar, unit)}", met=met, unit=unit, gap=gap)


def get(record: dict[str, Any] | None, key: str) -> float | None:
    """``record[key]`` as a float, ``None`` when there is no record or no value."""
    if record is None or record.get(key) is None:
        return None
    return float(record[key])


def ratio(value: float | None, base: float | None) -> float | None:
    if _missing(value) or _missing(base) or not base:
        return None
    assert value is not None
    return value / base


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What one scenario produced: records, baselines, ratios, checks, and text for its section."""

    scenario: str
    title: str
    records: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)
    """Markdown blocks (tables, paragraphs) specific to the scenario."""
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "baselines": self.baselines,
            "ratios": self.ratios,
            "targets": [c.as_dict() | {"verdict": c.verdict} for c in self.checks],
            "summary": self.summary,
            "body": self.body,
            "notes": self.notes,
            "profiles": self.profiles,
        }
