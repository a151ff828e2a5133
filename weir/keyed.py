"""A mapping keyed by ``(kind, namespace, name)`` that keeps no key tuple per entry.

The control plane holds every declared resource, and the status of most, by that key. As a
dict, each entry keeps its own 3-tuple (64 bytes); here entries are grouped by
``(kind, namespace)`` and filed under the name, a string the resource already holds.
Key tuples are built again only while iterating. Iteration goes group by group (each in the
order its entries were first set), not in overall insertion order.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TypeVar

Key = tuple[str, str, str]
V = TypeVar("V")


class KeyTable(MutableMapping[Key, V]):
    """``(kind, namespace, name)`` → value; see the module docstring."""

    __slots__ = ("_groups", "_size")

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, V]] = {}
        self._size = 0

    def __getitem__(self, key: Key) -> V:
        return self._groups[(key[0], key[1])][key[2]]

    def get(self, key: Key, default: V | None = None) -> V | None:  # type: ignore[override]
        group = self._groups.get((key[0], key[1]))
        return default if group is None else group.get(key[2], default)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 3:
            return False
        group = self._groups.get((key[0], key[1]))
        return group is not None and key[2] in group

    def __setitem__(self, key: Key, value: V) -> None:
        group = self._groups.setdefault((key[0], key[1]), {})
        if key[2] not in group:
            self._size += 1
        group[key[2]] = value

    def __delitem__(self, key: Key) -> None:
        group = self._groups[(key[0], key[1])]
        del group[key[2]]
        self._size -= 1
        if not group:
            del self._groups[(key[0], key[1])]

    def __iter__(self) -> Iterator[Key]:
        for (kind, namespace), group in self._groups.items():
            for name in group:
                yield (kind, namespace, name)

    def sorted_keys(self, kind: str, namespace: str | None = None) -> Iterator[Key]:
        """The keys of ``kind`` (in ``namespace``, or all) by namespace, then name; each tuple is
        built when reached, so a listing holds one at a time. The table must not change until
        the iteration ends."""
        spaces = sorted(ns for k, ns in self._groups if k == kind and namespace in (None, ns))
        for ns in spaces:
            for name in sorted(self._groups[(kind, ns)]):
                yield (kind, ns, name)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"KeyTable({dict(self.items())!r})"
