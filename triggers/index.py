"""The Trigger index: which of a Broker's Triggers accept an event, without asking all of them.

Each compiled filter promises exact attribute values through ``Filter.required``. The index
files every filter under the one key it can look up in O(1):

* ``required["type"]`` (and, when also present, ``required["source"]`` one level down);
* else ``required["source"]``;
* else the *unindexed* list, evaluated for every event (``prefix``, ``any``, ``not``, cesql...);
* filters that accept everything are answered without being called at all.

An event is evaluated only against the filters under its own ``type``/``source`` plus the
unindexed ones, so Triggers for other event types cost one dict lookup in total. The index is
immutable: the control plane builds a new one on every change (O(n), about a microsecond per
Trigger).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.event import Event, canonical
from triggers.filters.base import Filter
from triggers.filters.logical import MatchAll

PRIMARY = "type"
SECONDARY = "source"

# An entry holds the filter rather than its bound ``matches``: a bound method per Trigger costs
# memory for as long as the index lives, and calling ``flt.matches(event)`` allocates nothing.
Entry = tuple[str, Filter]
Entries = tuple[Entry, ...]
_EMPTY: Entries = ()


class TriggerIndex:
    """A :class:`broker.routing.Matcher` over subscription name → compiled filter."""

    __slots__ = ("_always", "_by_source", "_by_type", "_by_type_source", "_size", "_unindexed")

    def __init__(self, filters: Mapping[str, Filter]) -> None:
        always: list[str] = []
        by_type: dict[str, list[Entry]] = {}
        by_type_source: dict[str, dict[str, list[Entry]]] = {}
        by_source: dict[str, list[Entry]] = {}
        unindexed: list[Entry] = []
        for name, flt in filters.items():
            if isinstance(flt, MatchAll):
                always.append(name)
                continue
            required = flt.required
            entry = (name, flt)
            type_ = required.get(PRIMARY)
            source = required.get(SECONDARY)
            if type_ is not None:
                if source is None:
                    by_type.setdefault(type_, []).append(entry)
                else:
                    by_type_source.setdefault(type_, {}).setdefault(source, []).append(entry)
            elif source is not None:
                by_source.setdefault(source, []).append(entry)
            else:
                unindexed.append(entry)
        self._always = tuple(always)
        # Types with per-source entries are kept apart, so the common case (a type alone) costs
        # one tuple per type rather than a pair of (entries, sources).
        self._by_type = _freeze(by_type)
        self._by_type_source: Mapping[str, Mapping[str, Entries]] = MappingProxyType(
            {t: _freeze(sources) for t, sources in by_type_source.items()}
        )
        self._by_source = _freeze(by_source)
        self._unindexed: Entries = tuple(unindexed)
        self._size = len(filters)

    def __len__(self) -> int:
        return self._size

    def match(self, event: Event) -> list[str]:
        """Names of the subscriptions whose filters accept ``event`` (each at most once)."""
        attrs = event.attributes
        names = list(self._always)
        source = attrs.get(SECONDARY)
        if source is not None and not isinstance(source, str):
            source = canonical(source)
        type_ = attrs.get(PRIMARY)
        if type_ is not None and not isinstance(type_, str):
            type_ = canonical(type_)
        if type_ is not None:
            for name, flt in self._by_type.get(type_, _EMPTY):
                if flt.matches(event):
                    names.append(name)
            if source is not None and self._by_type_source:
                sources = self._by_type_source.get(type_)
                if sources is not None:
                    for name, flt in sources.get(source, _EMPTY):
                        if flt.matches(event):
                            names.append(name)
        if self._by_source and source is not None:
            for name, flt in self._by_source.get(source, _EMPTY):
                if flt.matches(event):
                    names.append(name)
        for name, flt in self._unindexed:
            if flt.matches(event):
                names.append(name)
        return names

    def __repr__(self) -> str:
        types = len(self._by_type.keys() | self._by_type_source.keys())
        return (
            f"TriggerIndex(triggers={self._size}, types={types}, "
            f"unindexed={len(self._unindexed)}, match_all={len(self._always)})"
        )


def _freeze(groups: Mapping[str, list[Entry]]) -> Mapping[str, Entries]:
    return MappingProxyType({key: tuple(entries) for key, entries in groups.items()})
