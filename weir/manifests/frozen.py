"""A resource's ``spec`` kept compactly: the JSON text of the value, decoded when read.

A loaded manifest's ``spec`` is read only when a set is applied (to see whether the generation
changed) and by the admin views, yet as nested dicts it costs several times its text for as
long as the resource is declared (about 750 bytes per typical Trigger, against 150 as JSON).

:func:`freeze` returns a :class:`FrozenSpec` holding the ``orjson`` encoding when decoding gives
back an equal value, and the value itself otherwise: YAML can produce what JSON cannot carry
(integer keys, dates, ``!!binary`` bytes, sets, NaN, integers beyond 64 bits), and such a spec
stays as loaded rather than failing the load or changing its values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson


class FrozenSpec(Mapping[str, Any]):
    """A read-only mapping over the JSON encoding of a ``spec`` object.

    Every read decodes the whole value, so each lookup returns fresh objects: changing them
    changes nothing held here. Keys keep the order they were written in. Equality is by value
    (key order does not matter), against another :class:`FrozenSpec` or any mapping.
    """

    __slots__ = ("_json",)

    def __init__(self, encoded: bytes) -> None:
        """``encoded`` must be the JSON text of an object (see :func:`freeze`)."""
        self._json = encoded

    def to_dict(self) -> dict[str, Any]:
        """The spec as a new plain ``dict`` (nested values are new objects too)."""
        value: dict[str, Any] = orjson.loads(self._json)
        return value

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenSpec):
            # Equal text is the common case (an unchanged manifest) and needs no decoding.
            return self._json == other._json or self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenSpec({self.to_dict()!r})"


def freeze(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec`` as a :class:`FrozenSpec` when JSON carries it unchanged, else ``spec`` itself."""
    if isinstance(spec, FrozenSpec):
        return spec
    try:
        encoded = orjson.dumps(spec)
    except TypeError:  # orjson.JSONEncodeError: a non-string key, bytes, a set, too deep, ...
        return spec
    # orjson writes dates as strings, NaN as null and tuples as arrays: only a value that
    # decodes back equal is kept as text.
    if orjson.loads(encoded) != spec:
        return spec
    # orjson hands out its whole write buffer (4 KiB at least): keep an exact-size copy.
    return FrozenSpec(bytes(memoryview(encoded)))


def thaw(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` as a new top-level ``dict`` (for views that hand it out)."""
    return spec.to_dict() if isinstance(spec, FrozenSpec) else dict(spec)
