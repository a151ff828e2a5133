"""Acceptance of events into a Broker's log, shared by HTTP ingress and subscriber replies.

Every accepted event gets ``knativearrivaltime`` (RFC 3339, UTC, microseconds) and a
``knativebrokerttl``: 255 when absent. An event whose TTL is 0 or below is refused with
:class:`~broker.errors.TTLExhausted` (ingress answers 400; a reply is dropped and counted).
The dispatcher removes the TTL before delivery and gives a subscriber's reply ``ttl - 1``,
so a reply loop ends after 255 hops.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from broker.errors import InvalidEvent, TTLExhausted
from broker.event import ARRIVAL_TIME, TTL, Event
from broker.store.base import EventStore

DEFAULT_TTL = 255


def ttl_of(event: Event) -> int:
    """The event's remaining broker hops (255 when it carries none)."""
    raw = event.get(TTL)
    if raw is None:
        return DEFAULT_TTL
    try:
        return int(raw)
    except ValueError:
        raise InvalidEvent(f"extension {TTL} must be an integer, got {raw!r}") from None


def stamp(event: Event, now: datetime | None = None) -> Event:
    """The event as stored: arrival time set, TTL defaulted. Raises TTLExhausted at 0."""
    ttl = ttl_of(event)
    if ttl <= 0:
        raise TTLExhausted(f"{TTL} is {ttl}: the event has passed through too many Brokers (loop?)")
    moment = (now or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return event.with_attributes({ARRIVAL_TIME: moment, TTL: ttl})


class Ingest:
    """Stamps and durably appends events to Broker logs."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def accept(self, log: str, events: Sequence[Event]) -> None:
        """Stamp and append ``events`` to ``log``, all or none; returns once they are durable.

        Raises TTLExhausted / InvalidEvent before anything is written, or StoreError.
        """
        now = datetime.now(UTC)
        await self._store.append(log, [stamp(e, now) for e in events])
