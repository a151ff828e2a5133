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

    __slots__ = ("_items", "required")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        # Exact entries first: they reject most events, presence-only entries rarely do.
        exact = [(k, v) for k, v in attributes.items() if v]
        self._items = tuple(exact + [(k, v) for k, v in attributes.items() if not v])
        self.required: Mapping[str, str] = MappingProxyType(dict(exact))

    def matches(self, event: Event) -> bool:
        attrs = event.attributes
        for name, want in self._items:
            value = attrs.get(name)
            if value is None:
                return False
            if want and value != want and (isinstance(value, str) or canonical(value) != want):
                return False
        return True

    def __repr__(self) -> str:
        return f"AttributesFilter({dict(self._items)!r})"
