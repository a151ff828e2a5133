"""The source seam: something that produces CloudEvents and hands them to an :class:`Emitter`.

A source never talks HTTP to its sink itself: the control plane gives it an :class:`Emitter`
bound to the resolved sink URL, the source's delivery settings and its ``ceOverrides``. The
emitter retries with the kernel's retry policy and, when the sink never accepts the event,
records it (in the Broker's dead-letter record when the sink is a Broker of this Weir, else in
the log with the full event) — a source event is never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from broker.event import Event


class Emitter(Protocol):
    """Delivers one source's events to its sink."""

    async def emit(self, event: Event) -> bool:
        """Deliver ``event`` (with ``ceOverrides`` applied) with retries.

        Returns ``True`` when the sink accepted it, ``False`` when every attempt failed and the
        event was recorded instead. Never raises for delivery failures.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStatus:
    """What a source reports for Knative-shaped status (``Ready`` condition, ``sinkUri``)."""

    ready: bool
    reason: str = ""
    message: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Additional status fields, e.g. ``{"lastTick": "..."}``."""


class Source(Protocol):
    """A running source. ``start`` returns once it runs; ``stop`` ends it and waits for in-flight work."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> SourceStatus: ...
