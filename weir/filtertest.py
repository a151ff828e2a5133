"""``weir filter test``: does an event pass a Trigger's filter, and which filter element decided it?

The verdict comes from the same compiled filters the dispatcher runs. The explanation walks the
top level of the Trigger's filter: ``spec.filters`` is an AND, so the first element that rejects the
event decides a non-match; every element passing decides a match. For the legacy
``spec.filter.attributes`` map the first attribute that rejects decides. CESQL elements are also
evaluated directly so their evaluation errors are shown rather than swallowed (an error means no
match, as at runtime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.event import Event
from triggers.cesql import CesqlError, compile as compile_cesql
from triggers.filters import compile_trigger_filter
from weir.manifests import Trigger


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One Trigger's verdict on one event."""

    trigger: str
    matches: bool
    decided_by: str
    """The field path that decided, e.g. ``spec.filters[1]``, or why nothing had to."""
    detail: str = ""
    errors: list[str] = field(default_factory=list)
    """CESQL evaluation errors, as ``kind: message``."""

    def render(self) -> str:
        head = f"Trigger {self.trigger}: {'MATCH' if self.matches else 'NO MATCH'} ({self.decided_by}"
        head += f": {self.detail})" if self.detail else ")"
        return "\n".join([head, *(f"  evaluation error: {e}" for e in self.errors)])


def _describe(element: Any) -> str:
    if not isinstance(element, dict) or not element:
        return "empty filter"
    dialect, value = next(iter(element.items()))
    if dialect == "cesql":
        return f"cesql {value!r}"
    if isinstance(value, dict):
        return f"{dialect} " + ", ".join(f"{k}={v!r}" for k, v in value.items())
    return f"{dialect} ({len(value) if isinstance(value, list) else 1} nested)"


def _cesql_errors(element: Any, event: Event) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("cesql"), str) or not element["cesql"]:
        return []
    result = compile_cesql(element["cesql"]).evaluate(event)
    return [f"{e.kind}: {e}" for e in result.errors if isinstance(e, CesqlError)]


def explain(trigger: Trigger, event: Event) -> Verdict:
    """Evaluate ``trigger``'s filter on ``event`` and say which element decided."""
    name = f"{trigger.namespace}/{trigger.name}"
    filter_, filters = trigger.filter_, trigger.filters  # each read decodes the Trigger's spec
    matches = compile_trigger_filter(filter_, filters, trigger=name).matches(event)
    if filters:
        elements: list[Any] = list(filters)
        for i, element in enumerate(elements):
            errors = _cesql_errors(element, event)
            if not compile_trigger_filter(None, [element], trigger=name).matches(event):
                return Verdict(
                    trigger=name,
                    matches=False,
                    decided_by=f"spec.filters[{i}]",
                    detail=_describe(element),
                    errors=errors,
                )
        return Verdict(
            trigger=name, matches=matches, decided_by=f"all {len(elements)} of spec.filters passed"
        )
    attributes = (filter_ or {}).get("attributes") or {}
    for key, value in attributes.items():
        single = {"attributes": {key: value}}
        if not compile_trigger_filter(single, None, trigger=name).matches(event):
            actual = event.text(key)
            detail = f"wants {value!r}, event has " + (
                "no such attribute" if actual is None else repr(actual)
            )
            if value == "":
                detail = "wants the attribute present, event has none"
            return Verdict(
                trigger=name, matches=False, decided_by=f"spec.filter.attributes.{key}", detail=detail
            )
    if attributes:
        return Verdict(trigger=name, matches=matches, decided_by="all of spec.filter.attributes matched")
    return Verdict(trigger=name, matches=matches, decided_by="no filter: every event matches")
