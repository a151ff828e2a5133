"""The ``cesql`` dialect: a CloudEvents SQL expression (see :mod:`triggers.cesql`).

An event passes when the expression evaluates to Boolean ``true`` without any error (CESQL v1
§1.2; Knative: "evaluation error ⇒ false"). Each evaluation error increments
``weir_cesql_evaluation_errors_total{trigger, kind}``, ``kind`` being the CESQL error kind
(``missingAttribute``, ``cast``, ``math``, …), so a Trigger whose expression names an attribute
its events lack is visible on ``/metrics``.

``required`` holds the ``attr = 'string literal'`` comparisons of a top-level AND: those are
exactly canonical-string equalities (the right operand's type decides, and every value casts to
String), so every accepted event has them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from prometheus_client import Counter

from broker.event import Event
from triggers.cesql import CesqlError, Expression, compile
from triggers.cesql.ast import Attribute, Binary, Literal, Node

EVALUATION_ERRORS = Counter(
    "weir_cesql_evaluation_errors",
    "CESQL filter evaluations that met an error (the event did not match), per Trigger and error kind.",
    ["trigger", "kind"],
)

_log = logging.getLogger(__name__)


class CesqlFilter:
    """A compiled ``cesql`` filter of one Trigger."""

    __slots__ = ("_counters", "_verdict", "expression", "required", "trigger")

    def __init__(self, expression: Expression, *, trigger: str) -> None:
        self.expression = expression
        self.trigger = trigger
        """``"<namespace>/<name>"``, the metric label."""
        self.required: Mapping[str, str] = required_values(expression.tree)
        self._verdict = expression.verdict
        self._counters: dict[str, Counter] = {}  # per error kind, created on first use

    def matches(self, event: Event) -> bool:
        try:
            passed, errors = self._verdict(event)
        except Exception:  # a bug in the engine must not stop delivery to other Triggers
            _log.exception(
                "CESQL filter of Trigger %s failed on event %s", self.trigger, event.attributes.get("id")
            )
            self._count(CesqlError.kind)
            return False
        if errors:
            for error in errors:
                self._count(error.kind)
        return passed

    def _count(self, kind: str) -> None:
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = EVALUATION_ERRORS.labels(trigger=self.trigger, kind=kind)
        counter.inc()

    def __repr__(self) -> str:
        return f"CesqlFilter({self.expression.source!r})"


def compile_cesql(expression: str, *, trigger: str) -> CesqlFilter:
    """The filter for ``expression``; ``trigger`` labels its error metric.

    Raises :class:`triggers.cesql.CesqlParseError` (a ``ValueError`` with ``position`` and
    ``reason``) when the expression is not valid CESQL.
    """
    return CesqlFilter(compile(expression), trigger=trigger)


def required_values(tree: Node) -> Mapping[str, str]:
    """Exact canonical values forced by ``attr = '…'`` terms of the top-level conjunction; a
    name pinned to two different values is left out (the filter can never match then)."""
    found: dict[str, str] = {}
    conflicts: set[str] = set()
    pending = [tree]
    while pending:
        node = pending.pop()
        if not isinstance(node, Binary):
            continue
        if node.op == "AND":
            pending += (node.right, node.left)
        elif (
            node.op == "="
            and isinstance(node.left, Attribute)
            and isinstance(node.right, Literal)
            and isinstance(node.right.value, str)
        ):
            if found.setdefault(node.left.name, node.right.value) != node.right.value:
                conflicts.add(node.left.name)
    for name in conflicts:
        del found[name]
    return MappingProxyType(found)
