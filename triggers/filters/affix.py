"""Shared machinery of the ``prefix`` and ``suffix`` dialects: each listed attribute must exist and
its canonical string form must pass a string test against the given value (case-sensitive).

Such filters promise nothing to the index (no exact value is implied).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.event import Event, canonical

_NOTHING: Mapping[str, str] = MappingProxyType({})


class AffixFilter:
    """Base of :class:`~triggers.filters.prefix.PrefixFilter` and
    :class:`~triggers.filters.suffix.SuffixFilter`; subclasses set ``test``."""

    __slots__ = ("_items",)

    @staticmethod
    def test(value: str, wanted: str) -> bool:
        """Whether the attribute's ``value`` passes against the filter's ``wanted`` string."""
        raise NotImplementedError

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self._items = tuple(attributes.items())

    @property
    def required(self) -> Mapping[str, str]:
        return _NOTHING

    def matches(self, event: Event) -> bool:
        attrs = event.attributes
        test = type(self).test
        for name, wanted in self._items:
            value = attrs.get(name)
            if value is None:
                return False
            if not isinstance(value, str):
                value = canonical(value)
            if not test(value, wanted):
                return False
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._items)!r})"
