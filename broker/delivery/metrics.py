"""Delivery counters: per-subscription numbers for :meth:`Dispatcher.stats` plus Prometheus series.

Prometheus series (default registry):

* ``weir_deliveries_total{trigger, outcome}``: final outcomes. ``outcome`` is ``delivered``
  (the subscriber accepted it), ``dead_letter_sink`` (a dead-letter sink accepted it),
  ``dead_letter_record`` (kept in the store's dead-letter record) or ``expired`` (older than
  ``max_event_age``, recorded without an attempt).
* ``weir_delivery_attempts_total{trigger}``: HTTP attempts to subscribers and dead-letter sinks.
* ``weir_delivery_latency_seconds``: from acceptance (``knativearrivaltime``) to final outcome.

Label children are resolved on a subscription's first use of each, then kept, so the hot path is
a lock-free increment and an idle Trigger costs no series (its counters appear at first use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import Counter, Histogram

Outcome = Literal["delivered", "dead_letter_sink", "dead_letter_record", "expired"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "dead_letter_sink", "dead_letter_record", "expired")

DELIVERIES = Counter("weir_deliveries", "Final delivery outcomes per Trigger.", ["trigger", "outcome"])
ATTEMPTS = Counter("weir_delivery_attempts", "HTTP delivery attempts per Trigger.", ["trigger"])
LATENCY = Histogram(
    "weir_delivery_latency_seconds",
    "Seconds from acceptance by the Broker to the final delivery outcome.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)


@dataclass(slots=True)
class SubscriptionStats:
    """Counters of one subscription since its worker started (``in_flight`` is a gauge)."""

    name: str
    in_flight: int = 0
    delivered: int = 0
    """Events the subscriber accepted."""
    retries: int = 0
    """Attempts after the first, subscriber and dead-letter sink together."""
    dead_lettered: int = 0
    """Events given up on: sent to the dead-letter sink, recorded in the store, or expired."""
    replies: int = 0
    """Reply events accepted into the Broker."""
    replies_dropped: int = 0
    """Reply events dropped because their ``knativebrokerttl`` ran out (loop protection)."""
    _delivered: Counter | None = field(default=None, repr=False)
    _attempts: Counter | None = field(default=None, repr=False)

    def attempt(self) -> None:
        if self._attempts is None:
            self._attempts = ATTEMPTS.labels(self.name)
        self._attempts.inc()

    def outcome(self, outcome: Outcome, latency: float | None) -> None:
        """Count a final outcome; ``latency`` in seconds since acceptance, when known."""
        if outcome == "delivered":
            self.delivered += 1
            if self._delivered is None:
                self._delivered = DELIVERIES.labels(self.name, outcome)
            self._delivered.inc()
        else:
            self.dead_lettered += 1
            DELIVERIES.labels(self.name, outcome).inc()  # rare: no need to keep the child
        if latency is not None:
            LATENCY.observe(max(latency, 0.0))

    def as_dict(self) -> dict[str, int]:
        """The counters by name (:data:`COUNTERS`)."""
        return {name: getattr(self, name) for name in COUNTERS}


COUNTERS = ("in_flight", "delivered", "retries", "dead_lettered", "replies", "replies_dropped")
"""The keys of :meth:`SubscriptionStats.as_dict`."""


def zero_counters() -> dict[str, int]:
    """What :meth:`SubscriptionStats.as_dict` reports before anything is counted, without
    building a :class:`SubscriptionStats` (idle subscriptions have none)."""
    return dict.fromkeys(COUNTERS, 0)
