"""The legacy ``filter.attributes`` map (Knative ``TriggerFilter``), with SPEC semantics.

All entries must hold (AND). For each entry the attribute must be present on the event; a
non-empty value must equal the attribute's canonical string form exactly (case-sensitive); an
empty value ``""`` accepts any value of a present attribute, including ``""`` itself. Spec
attributes such as ``subject`` are present only when the event carries them. An empty map
accepts every event.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.event import Event, canonical


class AttributesFilter:
    """Compiled ``filter.attributes``; promises the non-empty entries in :attr:`required`."""

    # The first entry has slots of its own: most Triggers filter on one attribute (the type),
    # and a tuple of pairs would cost each of them about 90 bytes more.
    __slots__ = ("_first", "_first_want", "_rest")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        # Exact entries first: they reject most events, presence-only entries rarely do.
        exact = [(k, v) for k, v in attributes.items() if v]
        items = exact + [(k, v) for k, v in attributes.items() if not v]
        self._first: str | None = items[0][0] if items else None
        """``None`` for an empty map (every event passes)."""
        self._first_want = items[0][1] if items else ""
        self._rest = tuple(items[1:])

    def _items(self) -> list[tuple[str, str]]:
        first = [] if self._first is None else [(self._first, self._first_want)]
        return first + list(self._rest)

    @property
    def required(self) -> Mapping[str, str]:
        """The non-empty entries (a new read-only mapping on every read).

        Built on demand: it is read when a Trigger index is built, while every declared Trigger
        would otherwise keep a copy of its entries.
        """
        return MappingProxyType({k: v for k, v in self._items() if v})

    @property
    def exact_only(self) -> bool:
        """Whether every entry has a value, so :meth:`matches` checks nothing but
        :attr:`required` (see :mod:`triggers.filters.base`)."""
        return self._first_want != "" and all(want for _, want in self._rest)

    def matches(self, event: Event) -> bool:
        attrs = event.attributes
        # The entry check is written out twice: a helper call per entry cost a quarter more time.
        name = self._first
        if name is not None:
            value = attrs.get(name)
            if value is None:
                return False
            want = self._first_want
            if want and value != want and (isinstance(value, str) or canonical(value) != want):
                return False
        for name, want in self._rest:
            value = attrs.get(name)
            if value is None:
                return False
            if want and value != want and (isinstance(value, str) or canonical(value) != want):
                return False
        return True

    def __repr__(self) -> str:
        return f"AttributesFilter({dict(self._items())!r})"
