"""The ``exact`` dialect: every listed attribute exists and equals the given value.

Comparison is case-sensitive on the attribute's canonical string form
(:func:`broker.event.canonical`), so an integer extension ``5`` equals ``"5"`` and a boolean
equals ``"true"``/``"false"``. An absent attribute never matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.event import Event, canonical


class ExactFilter:
    """``exact: {name: value, ...}``; promises every entry in :attr:`required`."""

    __slots__ = ("_items", "required")

    exact_only = True
    """:meth:`matches` checks nothing but :attr:`required` (see :mod:`triggers.filters.base`)."""

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self._items = tuple(attributes.items())
        self.required: Mapping[str, str] = MappingProxyType(dict(attributes))

    def matches(self, event: Event) -> bool:
        attrs = event.attributes
        for name, want in self._items:
            value = attrs.get(name)
            if value is None:
                return False
            # Header values are already strings: only int/bool extensions pay for canonical().
            if value != want and (isinstance(value, str) or canonical(value) != want):
                return False
        return True

    def __repr__(self) -> str:
        return f"ExactFilter({dict(self._items)!r})"
