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

from collections.abc import Callable, Mapping
from types import MappingProxyType

from broker.event import Event, canonical
from triggers.filters.base import Filter
from triggers.filters.logical import MatchAll

PRIMARY = "type"
SECONDARY = "source"

Check = Callable[[Event], bool]
Entries = tuple[tuple[str, Check], ...]
_EMPTY: Entries = ()


class TriggerIndex:
    """A :class:`broker.routing.Matcher` over subscription name → compiled filter."""

    __slots__ = ("_always", "_by_source", "_by_type", "_size", "_unindexed")

    def __init__(self, filters: Mapping[str, Filter]) -> None:
        always: list[str] = []
        by_type: dict[str, tuple[list[tuple[str, Check]], dict[str, list[tuple[str, Check]]]]] = {}
        by_source: dict[str, list[tuple[str, Check]]] = {}
        unindexed: list[tuple[str, Check]] = []
        for name, flt in filters.items():
            if isinstance(flt, MatchAll):
                always.append(name)
                continue
            required = flt.required
            entry = (name, flt.matches)
            type_ = required.get(PRIMARY)
            source = required.get(SECONDARY)
            if type_ is not None:
                rest, sources = by_type.setdefault(type_, ([], {}))
                if source is None:
                    rest.append(entry)
                else:
                    sources.setdefault(source, []).append(entry)
            elif source is not None:
                by_source.setdefault(source, []).append(entry)
            else:
                unindexed.append(entry)
        self._always = tuple(always)
        self._by_type: Mapping[str, tuple[Entries, Mapping[str, Entries] | None]] = MappingProxyType(
            {t: (tuple(rest), _freeze(sources) or None) for t, (rest, sources) in by_type.items()}
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
        bucket = self._by_type.get(type_) if type_ is not None else None
        if bucket is not None:
            rest, sources = bucket
            for name, check in rest:
                if check(event):
                    names.append(name)
            if sources is not None and source is not None:
                for name, check in sources.get(source, _EMPTY):
                    if check(event):
                        names.append(name)
        if self._by_source and source is not None:
            for name, check in self._by_source.get(source, _EMPTY):
                if check(event):
                    names.append(name)
        for name, check in self._unindexed:
            if check(event):
                names.append(name)
        return names

    def __repr__(self) -> str:
        return (
            f"TriggerIndex(triggers={self._size}, types={len(self._by_type)}, "
            f"unindexed={len(self._unindexed)}, match_all={len(self._always)})"
        )


def _freeze(groups: Mapping[str, list[tuple[str, Check]]]) -> Mapping[str, Entries]:
    return MappingProxyType({key: tuple(entries) for key, entries in groups.items()})
