"""The CloudEvent as Weir holds it inside: attributes plus opaque data bytes.

Wire formats (HTTP binary/structured/batch, JSON) live in :mod:`broker.bindings`; everything
between ingress and delivery handles only :class:`Event`.

Attribute values keep the type they arrived with: header values (binary mode) are ``str``;
structured JSON may carry ``int`` or ``bool`` extension values, which are kept so a structured
round trip stays faithful. :meth:`Event.text` gives the canonical string form (CloudEvents
spec "canonical string encoding") that filters compare against.

``data`` is the payload as bytes, delivered byte-for-byte; ``None`` means the event has no data
(different from an empty payload ``b""``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

AttrValue = str | int | bool

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
SPEC_VERSIONS = ("1.0", "0.3")

# Extensions Weir itself sets or reads (Knative names).
TTL = "knativebrokerttl"
ARRIVAL_TIME = "knativearrivaltime"
ERROR_DEST = "knativeerrordest"
ERROR_CODE = "knativeerrorcode"
ERROR_DATA = "knativeerrordata"
PARTITION_KEY = "partitionkey"


def canonical(value: AttrValue) -> str:
    """Canonical string form of an attribute value (``true``/``false`` for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable CloudEvent: ``attributes`` (context attributes and extensions) and ``data``."""

    attributes: Mapping[str, AttrValue]
    data: bytes | None = field(default=None)
    _derived: dict[Callable[[Event], Any], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def derived(self, build: Callable[[Event], T]) -> T:
        """``build(self)``, computed on the first call and kept with the event afterwards.

        An event stored once is delivered to every matching Trigger; its wire form and the like
        are worked out once for all of them. ``build`` must be a pure function of the event
        (a module-level function: it is the cache key) and its result must not be mutated.
        """
        memo = self._derived
        if memo is None:
            memo = {}
            object.__setattr__(self, "_derived", memo)
        elif build in memo:
            return memo[build]  # type: ignore[no-any-return]
        value = memo[build] = build(self)
        return value

    @property
    def id(self) -> str:
        return canonical(self.attributes["id"])

    @property
    def source(self) -> str:
        return canonical(self.attributes["source"])

    @property
    def type(self) -> str:
        return canonical(self.attributes["type"])

    @property
    def specversion(self) -> str:
        return canonical(self.attributes["specversion"])

    def get(self, name: str) -> AttrValue | None:
        return self.attributes.get(name)

    def text(self, name: str) -> str | None:
        """The attribute's canonical string form, or ``None`` when the event lacks it."""
        value = self.attributes.get(name)
        return None if value is None else canonical(value)

    def with_attributes(self, values: Mapping[str, AttrValue]) -> Event:
        """A copy with ``values`` set (added or replaced)."""
        merged = dict(self.attributes)
        merged.update(values)
        return Event(merged, self.data)

    def without(self, names: Iterable[str]) -> Event:
        """A copy without the named attributes (absent names are ignored)."""
        drop = set(names)
        return Event({k: v for k, v in self.attributes.items() if k not in drop}, self.data)
