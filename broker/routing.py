"""What the dispatcher needs to know about Brokers and Triggers, as plain values.

The control plane (``weir``) builds these from manifests; ``triggers`` provides the
:class:`Matcher`; the dispatcher (:mod:`broker.delivery.dispatcher`) runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from broker.delivery.spec import DeliverySpec
from broker.event import Event

DEFAULT_MAX_IN_FLIGHT = 64


class Matcher(Protocol):
    """Decides which subscriptions of one Broker an event goes to."""

    def match(self, event: Event) -> Iterable[str]:
        """Names (``"<namespace>/<trigger>"``) of the subscriptions whose filters accept ``event``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionPlan:
    """One Trigger, resolved: where its events go and how."""

    name: str
    """``"<namespace>/<trigger>"``; also the store's subscription key."""
    namespace: str
    subscriber: str
    """Absolute URL of the subscriber."""
    delivery: DeliverySpec
    ordered: bool = False
    """Ordered delivery: per ``partitionkey`` value (or for the whole Trigger when absent), the
    next event is sent only after the previous one has a final outcome."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerPlan:
    """One Broker, resolved: its log and its ready Triggers."""

    log: str
    """``"<namespace>/<broker>"``."""
    matcher: Matcher
    subscriptions: Mapping[str, SubscriptionPlan] = field(default_factory=dict)
