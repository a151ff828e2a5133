"""The ``suffix`` dialect: every listed attribute exists and ends with the given value.

Case-sensitive, on the attribute's canonical string form. Promises nothing to the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.event import Event, canonical

_NOTHING: Mapping[str, str] = MappingProxyType({})


class SuffixFilter:
    """``suffix: {name: value, ...}``."""

    __slots__ = ("_items",)

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self._items = tuple(attributes.items())

    @property
    def required(self) -> Mapping[str, str]:
        return _NOTHING

    def matches(self, event: Event) -> bool:
        attrs = event.attributes
        for name, suffix in self._items:
            value = attrs.get(name)
            if value is None:
                return False
            if not isinstance(value, str):
                value = canonical(value)
            if not value.endswith(suffix):
                return False
        return True

    def __repr__(self) -> str:
        return f"SuffixFilter({dict(self._items)!r})"
