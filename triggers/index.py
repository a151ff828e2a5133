"""The Trigger index: which of a Broker's Triggers accept an event, without asking all of them.

Each compiled filter promises exact attribute values through ``Filter.required``. The index
files every filter under the one key it can look up in O(1):

* ``required["type"]`` (and, when also present, ``required["source"]`` one level down);
* else ``required["source"]``;
* else the *unindexed* list, evaluated for every event (``prefix``, ``any``, ``not``, cesql...);
* filters that accept everything are answered without being called at all, and so are filters
  that check nothing but the values of their key (``exact_only``, see
  :class:`~triggers.filters.base.Filter`): the lookup has decided for them, so only their name
  is kept (most Triggers filter on one type; a kept filter and its entry cost each ~180 bytes).

An event is evaluated only against the filters under its own ``type``/``source`` plus the
unindexed ones, so Triggers for other event types cost one dict lookup in total. The index is
immutable: the control plane builds a new one on every change (O(n), about a microsecond per
Trigger). :class:`IndexBuilder` files filters one at a time, so a caller compiling them can
let each one go at once.
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
Group = str | tuple[str | Entry, ...]
"""The Triggers filed under one key, in the order added: a name alone when that is all (one
Trigger whose filter the key decides), else names (decided by the key) and entries to evaluate."""


class IndexBuilder:
    """Collects ``(name, filter)`` pairs for one :class:`TriggerIndex`."""

    __slots__ = ("_always", "_by_source", "_by_type", "_by_type_source", "_size", "_unindexed")

    def __init__(self) -> None:
        self._always: list[str] = []
        # A key's group is a bare name until a second Trigger shares the key: a list per key
        # would be garbage left among the kept objects once the index is built.
        self._by_type: dict[str, str | list[str | Entry]] = {}
        self._by_type_source: dict[str, dict[str, str | list[str | Entry]]] = {}
        self._by_source: dict[str, str | list[str | Entry]] = {}
        self._unindexed: list[Entry] = []
        self._size = 0

    def add(self, name: str, flt: Filter) -> None:
        """File subscription ``name`` with its compiled filter (each name once)."""
        self._size += 1
        if isinstance(flt, MatchAll):
            self._always.append(name)
            return
        required = flt.required
        type_ = required.get(PRIMARY)
        source = required.get(SECONDARY)
        keys = (type_ is not None) + (source is not None)
        decided = keys > 0 and keys == len(required) and getattr(flt, "exact_only", False)
        item: str | Entry = name if decided else (name, flt)
        if type_ is not None:
            if source is None:
                _file(self._by_type, type_, item)
            else:
                _file(self._by_type_source.setdefault(type_, {}), source, item)
        elif source is not None:
            _file(self._by_source, source, item)
        else:
            self._unindexed.append((name, flt))

    def build(self) -> TriggerIndex:
        return TriggerIndex(self)


def _file(groups: dict[str, str | list[str | Entry]], key: str, item: str | Entry) -> None:
    group = groups.get(key)
    if group is None:
        groups[key] = item if isinstance(item, str) else [item]
    elif isinstance(group, str):
        groups[key] = [group, item]
    else:
        group.append(item)


def _freeze(groups: Mapping[str, str | list[str | Entry]]) -> Mapping[str, Group]:
    return MappingProxyType({k: g if isinstance(g, str) else tuple(g) for k, g in groups.items()})


class TriggerIndex:
    """A :class:`broker.routing.Matcher` over subscription name → compiled filter."""

    __slots__ = ("_always", "_by_source", "_by_type", "_by_type_source", "_size", "_unindexed")

    def __init__(self, filters: Mapping[str, Filter] | IndexBuilder) -> None:
        """The index of ``filters``, or of what an :class:`IndexBuilder` collected."""
        if isinstance(filters, IndexBuilder):
            built = filters
        else:
            built = IndexBuilder()
            for name, flt in filters.items():
                built.add(name, flt)
        self._always = tuple(built._always)
        # Types with per-source groups are kept apart, so the common case (a type alone) costs
        # one group per type rather than a pair of (group, sources).
        self._by_type = _freeze(built._by_type)
        self._by_type_source: Mapping[str, Mapping[str, Group]] = MappingProxyType(
            {t: _freeze(sources) for t, sources in built._by_type_source.items()}
        )
        self._by_source = _freeze(built._by_source)
        self._unindexed: Entries = tuple(built._unindexed)
        self._size = built._size

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
            group = self._by_type.get(type_)
            if group is not None:
                _collect(group, event, names)
            if source is not None and self._by_type_source:
                sources = self._by_type_source.get(type_)
                if sources is not None:
                    group = sources.get(source)
                    if group is not None:
                        _collect(group, event, names)
        if self._by_source and source is not None:
            group = self._by_source.get(source)
            if group is not None:
                _collect(group, event, names)
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


def _collect(group: Group, event: Event, names: list[str]) -> None:
    """Append the names of ``group`` whose filters accept ``event`` (the key already matched)."""
    if isinstance(group, str):
        names.append(group)
        return
    for item in group:
        if isinstance(item, str):
            names.append(item)
        elif item[1].matches(event):
            names.append(item[0])
