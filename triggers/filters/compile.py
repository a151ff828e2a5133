"""Trigger filter validation and compilation: raw ``spec.filter`` / ``spec.filters`` values in,
one :class:`~triggers.filters.base.Filter` out.

Which filter applies (Knative): a non-empty ``spec.filters`` list is the only filter evaluated
(an implicit ``all``); otherwise ``spec.filter.attributes`` (the legacy map); otherwise every
event matches. An element with no dialect set (``{}``, ``exact: {}``, ``cesql: ""``) is neutral:
it passes on its own and is ignored inside ``all``/``any``/``not``.

:func:`check_filters` does what Knative's admission webhook does, so a Trigger is rejected as a
whole before anything is compiled; :func:`compile_trigger_filter` assumes it found no problem.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.errors import ManifestError
from triggers.filters.attributes import AttributesFilter
from triggers.filters.base import Filter
from triggers.filters.exact import ExactFilter
from triggers.filters.logical import MATCH_ALL, AllFilter, AnyFilter, NotFilter
from triggers.filters.prefix import PrefixFilter
from triggers.filters.suffix import SuffixFilter

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")
MAX_DEPTH = 32
"""Deepest nesting of ``all``/``any``/``not`` accepted (also stops YAML alias cycles)."""

# Cheap, selective dialects first inside all/any; cesql and unknown filters last.
_COST: dict[type, int] = {ExactFilter: 0, AttributesFilter: 0, PrefixFilter: 1, SuffixFilter: 1}
_MAP_DIALECTS: dict[str, Callable[[Mapping[str, str]], Filter]] = {
    "exact": ExactFilter,
    "prefix": PrefixFilter,
    "suffix": SuffixFilter,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterProblem:
    """One reason a Trigger's filters are rejected."""

    path: str
    """Field path from the Trigger, e.g. ``spec.filters[1].exact.Type``."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class _CesqlCompiler(Protocol):
    def __call__(self, expression: str, *, trigger: str) -> Filter: ...


def _cesql_compiler() -> _CesqlCompiler | None:
    """``triggers.filters.cesql.compile_cesql``, or ``None`` while Weir is built without it."""
    try:
        module = importlib.import_module("triggers.filters.cesql")
    except ImportError:
        return None
    compiler: _CesqlCompiler = module.compile_cesql
    return compiler


# --- validation --------------------------------------------------------------------------------


def check_filters(filter_: Any, filters: Any) -> list[FilterProblem]:
    """Every problem in the raw YAML values of ``spec.filter`` and ``spec.filters`` (``None`` when
    a field is absent); an empty list means :func:`compile_trigger_filter` may be called."""
    problems: list[FilterProblem] = []
    if filter_ is not None:
        _check_legacy(filter_, problems)
    if filters is not None:
        if not isinstance(filters, list):
            problems.append(FilterProblem(path="spec.filters", reason="must be a list of filter objects"))
        else:
            for i, element in enumerate(filters):
                _check_element(element, f"spec.filters[{i}]", 0, problems)
    return problems


def _check_legacy(value: Any, problems: list[FilterProblem]) -> None:
    if not isinstance(value, dict):
        problems.append(FilterProblem(path="spec.filter", reason="must be an object"))
        return
    for key, attributes in value.items():
        if key != "attributes":
            reason = "unknown field: spec.filter may only contain attributes (dialects go in spec.filters)"
            problems.append(FilterProblem(path=f"spec.filter.{key}", reason=reason))
        elif attributes is not None:
            _check_attribute_map(attributes, "spec.filter.attributes", problems, empty_values=True)


def _check_attribute_map(value: Any, path: str, problems: list[FilterProblem], *, empty_values: bool) -> None:
    if not isinstance(value, dict):
        problems.append(FilterProblem(path=path, reason="must be a map of attribute names to strings"))
        return
    for name, text in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            problems.append(FilterProblem(path=where, reason="attribute name must match ^[a-z][a-z0-9]*$"))
        if not isinstance(text, str):
            problems.append(FilterProblem(path=where, reason="value must be a string (quote it in YAML)"))
        elif not text and not empty_values:
            problems.append(FilterProblem(path=where, reason="value must not be empty"))


def _is_set(dialect: str, value: Any) -> bool:
    """Whether an element sets ``dialect`` (Knative counts only non-empty maps, lists, strings)."""
    if value is None:
        return False
    if dialect == "not":
        return True
    return not (isinstance(value, dict | list | str) and len(value) == 0)


def _check_element(value: Any, path: str, depth: int, problems: list[FilterProblem]) -> None:
    if depth > MAX_DEPTH:
        problems.append(FilterProblem(path=path, reason=f"filters nested deeper than {MAX_DEPTH} levels"))
        return
    if not isinstance(value, dict):
        problems.append(FilterProblem(path=path, reason="must be a filter object"))
        return
    if sum(_is_set(k, v) for k, v in value.items() if k in DIALECTS) > 1:
        reason = "multiple dialects found, filters can have only one dialect set"
        problems.append(FilterProblem(path=path, reason=reason))
    for dialect, body in value.items():
        where = f"{path}.{dialect}"
        if dialect not in DIALECTS:
            reason = f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}"
            problems.append(FilterProblem(path=where, reason=reason))
        elif body is None:
            continue
        elif dialect in _MAP_DIALECTS:
            _check_attribute_map(body, where, problems, empty_values=False)
        elif dialect in ("all", "any"):
            if not isinstance(body, list):
                problems.append(FilterProblem(path=where, reason="must be a list of filters"))
            elif not body:
                problems.append(FilterProblem(path=where, reason="must contain at least one filter"))
            else:
                for i, child in enumerate(body):
                    _check_element(child, f"{where}[{i}]", depth + 1, problems)
        elif dialect == "not":
            if not isinstance(body, dict):
                problems.append(FilterProblem(path=where, reason="must be a single filter object"))
            else:
                _check_element(body, where, depth + 1, problems)
        else:
            _check_cesql(body, where, problems)


def _check_cesql(value: Any, path: str, problems: list[FilterProblem]) -> None:
    if not isinstance(value, str):
        problems.append(FilterProblem(path=path, reason="must be a string"))
        return
    if not value:
        return
    compiler = _cesql_compiler()
    if compiler is None:
        problems.append(FilterProblem(path=path, reason="cesql filters are not supported yet"))
        return
    try:
        compiler(value, trigger="")
    except ValueError as exc:
        problems.append(FilterProblem(path=path, reason=_cesql_reason(exc)))


def _cesql_reason(exc: ValueError) -> str:
    position, reason = getattr(exc, "position", None), getattr(exc, "reason", None)
    if position is None or reason is None:
        return f"invalid CESQL expression: {exc}"
    return f"invalid CESQL expression at position {position}: {reason}"


# --- compilation -------------------------------------------------------------------------------


def compile_trigger_filter(filter_: Any, filters: Any, *, trigger: str) -> Filter:
    """The one filter for a Trigger whose ``spec.filter``/``spec.filters`` passed
    :func:`check_filters`. ``trigger`` is ``"<namespace>/<name>"`` (labels cesql metrics).

    Raises :class:`~broker.errors.ManifestError` when the precondition does not hold.
    """
    try:
        if filters:
            return _compile_list(filters, "all", trigger) or MATCH_ALL
        attributes = filter_.get("attributes") if filter_ else None
        return AttributesFilter(attributes) if attributes else MATCH_ALL
    except (TypeError, AttributeError, ValueError) as exc:
        problems = check_filters(filter_, filters) or [FilterProblem(path="spec", reason=str(exc))]
        raise ManifestError([f"Trigger {trigger}: {p}" for p in problems]) from exc


def _compile_element(value: Mapping[str, Any], trigger: str) -> Filter | None:
    """The element's filter, or ``None`` when it sets no dialect (neutral)."""
    for dialect, body in value.items():
        if not _is_set(dialect, body):
            continue
        if dialect in _MAP_DIALECTS:
            return _MAP_DIALECTS[dialect](body)
        if dialect in ("all", "any"):
            return _compile_list(body, dialect, trigger)
        if dialect == "not":
            child = _compile_element(body, trigger)
            return None if child is None else NotFilter(child)
        if dialect == "cesql":
            compiler = _cesql_compiler()
            if compiler is None:
                raise ValueError("cesql filters are not supported yet")
            return compiler(body, trigger=trigger)
    return None


def _compile_list(values: Sequence[Mapping[str, Any]], dialect: str, trigger: str) -> Filter | None:
    kind = AllFilter if dialect == "all" else AnyFilter
    children: list[Filter] = []
    for value in values:
        child = _compile_element(value, trigger)
        if isinstance(child, kind):
            children.extend(child.children)  # all(all(a, b), c) == all(a, b, c); same for any
        elif child is not None:
            children.append(child)
    if not children:
        return None
    if len(children) == 1:
        return children[0]
    children.sort(key=lambda c: _COST.get(type(c), 2))
    return kind(children)
