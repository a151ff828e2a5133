"""The ``all``, ``any`` and ``not`` dialects, and the filter that accepts everything.

Knative evaluates Subscriptions API filters to Pass, Fail or NoFilter, where NoFilter (an empty
dialect object ``{}``) is neutral: ``all``/``any`` ignore it and ``not`` of it is NoFilter. The
neutral element is decided by the shape of the spec alone, so the compiler drops it before
building these classes (see :mod:`triggers.filters.compile`); at run time every filter here is
plain boolean logic with short-circuit evaluation in list order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from broker.event import Event
from triggers.filters.base import Filter

_NOTHING: Mapping[str, str] = MappingProxyType({})


def merged_requirements(filters: Iterable[Filter]) -> Mapping[str, str]:
    """Union of the children's ``required``; a name two children pin to different values is left
    out (the conjunction can never match then, so any subset is still a true promise)."""
    merged: dict[str, str] = {}
    conflicts: set[str] = set()
    for flt in filters:
        for name, value in flt.required.items():
            if merged.setdefault(name, value) != value:
                conflicts.add(name)
    for name in conflicts:
        del merged[name]
    return MappingProxyType(merged) if merged else _NOTHING


class MatchAll:
    """Accepts every event: no filter, an empty ``filter``, or only neutral ``filters``."""

    __slots__ = ()

    @property
    def required(self) -> Mapping[str, str]:
        return _NOTHING

    def matches(self, event: Event) -> bool:
        return True

    def __repr__(self) -> str:
        return "MatchAll()"


MATCH_ALL = MatchAll()


class AllFilter:
    """``all: [...]`` (and the top-level ``filters`` list): true iff every child is true."""

    __slots__ = ("_checks", "children", "required")

    def __init__(self, children: Sequence[Filter]) -> None:
        self.children = tuple(children)
        # Bound methods, so evaluation skips one attribute lookup per child.
        self._checks: tuple[Callable[[Event], bool], ...] = tuple(c.matches for c in self.children)
        self.required = merged_requirements(self.children)

    def matches(self, event: Event) -> bool:
        for check in self._checks:
            if not check(event):
                return False
        return True

    def __repr__(self) -> str:
        return f"AllFilter({list(self.children)!r})"


class AnyFilter:
    """``any: [...]``: true iff at least one child is true. Promises nothing."""

    __slots__ = ("_checks", "children")

    def __init__(self, children: Sequence[Filter]) -> None:
        self.children = tuple(children)
        self._checks: tuple[Callable[[Event], bool], ...] = tuple(c.matches for c in self.children)

    @property
    def required(self) -> Mapping[str, str]:
        return _NOTHING

    def matches(self, event: Event) -> bool:
        for check in self._checks:
            if check(event):
                return True
        return False

    def __repr__(self) -> str:
        return f"AnyFilter({list(self.children)!r})"


class NotFilter:
    """``not: {...}``: true iff the child is false (an evaluation error inside the child is
    false, so its negation passes, as in Knative). Promises nothing."""

    __slots__ = ("_check", "child")

    def __init__(self, child: Filter) -> None:
        self.child = child
        self._check = child.matches

    @property
    def required(self) -> Mapping[str, str]:
        return _NOTHING

    def matches(self, event: Event) -> bool:
        return not self._check(event)

    def __repr__(self) -> str:
        return f"NotFilter({self.child!r})"
