"""The filter seam: a compiled predicate over an event's context attributes.

Filters never look at ``data`` (Knative filters only attributes and extensions).
``required`` lets the Trigger index skip filters cheaply: every event a filter accepts has
these exact attribute values (canonical string form). A filter that cannot promise anything
returns an empty mapping and is evaluated for every event.

A filter may also set ``exact_only = True`` when it accepts an event exactly when every
``required`` value is there and nothing else is checked: the index then keeps its name only
and does not call it. Without the attribute, a filter is always evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from broker.event import Event


class Filter(Protocol):
    """A compiled Trigger filter."""

    @property
    def required(self) -> Mapping[str, str]:
        """Exact attribute values every accepted event has (may be empty)."""

    def matches(self, event: Event) -> bool:
        """Whether the event passes. Never raises: an evaluation error means no match."""
