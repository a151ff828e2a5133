"""Subscription plans: what the dispatcher runs for each Ready Trigger, built when read.

A :class:`~broker.routing.SubscriptionPlan` is needed only when a worker starts or is updated
(and by the router, once, to learn whether the first event routed to it is ordered), yet most
Triggers of a large set never get a worker (see :mod:`broker.delivery.dispatcher`).
:class:`SubscriptionPlans` therefore keeps each Ready Trigger and builds its plan on every read
from the apply's :class:`~weir.declared.Declared`, which never changes: every read gives an
equal plan, the one the apply would have built (about 150 bytes per Trigger not kept, with its
subscriber URL).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from broker.routing import DEFAULT_MAX_IN_FLIGHT, SubscriptionPlan
from weir.declared import Declared
from weir.manifests import Trigger
from weir.manifests.resolve import UnresolvedDestination


def subscription_plan(name: str, trigger: Trigger, declared: Declared) -> SubscriptionPlan:
    """The plan of ``trigger`` (subscription ``name``, ``"<namespace>/<trigger>"``) as
    ``declared`` resolves it. Raises UnresolvedDestination when its subscriber or dead-letter
    sink does not resolve there (such a Trigger is not Ready, and has no plan)."""
    targets = declared.targets(trigger)
    if isinstance(targets.subscriber, UnresolvedDestination):
        raise targets.subscriber
    if isinstance(targets.delivery, UnresolvedDestination):
        raise targets.delivery
    return SubscriptionPlan(
        name=name,
        namespace=trigger.namespace,
        subscriber=targets.subscriber,
        delivery=targets.delivery,
        ordered=trigger.ordered,
        max_in_flight=trigger.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
    )


class SubscriptionPlans(Mapping[str, SubscriptionPlan]):
    """One Broker's subscriptions: name -> plan, each plan a new object built on every read.

    Membership, iteration and length never build a plan. Only Ready Triggers may be added
    (their plans resolve); nothing is removed: a new apply makes a new mapping.
    """

    __slots__ = ("_declared", "_triggers")

    def __init__(self, declared: Declared) -> None:
        self._declared = declared
        self._triggers: dict[str, Trigger] = {}

    def add(self, name: str, trigger: Trigger) -> None:
        """File Ready ``trigger`` as subscription ``name`` (``"<namespace>/<trigger>"``)."""
        self._triggers[name] = trigger

    def __getitem__(self, name: str) -> SubscriptionPlan:
        return subscription_plan(name, self._triggers[name], self._declared)

    def __contains__(self, name: object) -> bool:
        return name in self._triggers

    def __iter__(self) -> Iterator[str]:
        return iter(self._triggers)

    def __len__(self) -> int:
        return len(self._triggers)

    def __repr__(self) -> str:
        return f"SubscriptionPlans({sorted(self._triggers)!r})"
