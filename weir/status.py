"""Knative-shaped status of Brokers, IntegrationSinks and Triggers.

A status is observed from one apply's :class:`~weir.declared.Declared`: addresses and resolved
URLs, plus conditions (``Ready`` first: True when every other condition is, else it repeats the
first failing one's reason and message). Each condition's ``lastTransitionTime`` is kept from
the previous apply unless the condition's status changed.

:class:`Statuses` keeps, per resource, only its conditions as stamped at the apply. Everything
else in a status is a function of the (never changed) ``Declared``, so a view observes it again
and comes out equal to what the apply saw: 10,000 Ready Triggers share a handful of stamped
condition tuples and keep nothing of their own but a table entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weir.declared import Declared
from weir.keyed import Key, KeyTable
from weir.manifests import Broker, IntegrationSink, Resource, Trigger
from weir.manifests.resolve import UnresolvedDestination, resolve

Condition = tuple[str, str, str, str]
"""``(type, status, reason, message)`` of a condition being observed; empty ones are left out of
the status view. Tuples rather than dicts: an apply observes several per resource and keeps none."""

Stamped = tuple[dict[str, str], ...]
"""Conditions as shown, ``lastTransitionTime`` included; shared, never changed in place."""

_CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")


def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Condition:
    return (kind, "True" if ok else "False", reason, message)


def ready(conditions: list[Condition]) -> Condition:
    """The ``Ready`` condition: True when every other condition is, else the first failing one's reason."""
    failing = next((c for c in conditions if c[1] != "True"), None)
    if failing is None:
        return condition("Ready", True)
    return condition("Ready", False, failing[2] or "NotReady", failing[3])


def observe(resource: Resource, declared: Declared) -> dict[str, Any] | None:
    """A new status of ``resource`` as ``declared`` resolves it, conditions as a list of
    :data:`Condition` (``Ready`` first) and no ``observedGeneration``; ``None`` for the kinds
    whose status is not observed here (sources report theirs live)."""
    if isinstance(resource, Trigger):
        return _trigger(resource, declared)
    if isinstance(resource, Broker):
        return _broker(resource, declared)
    if isinstance(resource, IntegrationSink):
        url = declared.sink_url(resource.namespace, resource.name)
        return {"address": {"url": url}, "conditions": [condition("Ready", True)]}
    return None


def _broker(broker: Broker, declared: Declared) -> dict[str, Any]:
    url = declared.broker_url(broker.namespace, broker.name)
    conditions = [condition("IngressReady", True), condition("Addressable", True)]
    st: dict[str, Any] = {"address": {"url": url}}
    dls = broker.delivery.dead_letter_sink if broker.delivery else None
    if dls is not None:
        try:
            st["deadLetterSinkUri"] = resolve(dls, namespace=broker.namespace, ctx=declared.ctx)
            conditions.append(condition("DeadLetterSinkResolved", True))
        except UnresolvedDestination as exc:
            conditions.append(condition("DeadLetterSinkResolved", False, "Unresolved", str(exc)))
    conditions.insert(0, ready(conditions))
    st["conditions"] = conditions
    return st


def _trigger(trigger: Trigger, declared: Declared) -> dict[str, Any]:
    targets = declared.targets(trigger)
    st: dict[str, Any] = {}
    conditions: list[Condition] = []
    if targets.broker is not None:
        conditions.append(condition("BrokerReady", True))
    else:
        missing = f"Broker {trigger.namespace}/{trigger.broker} does not exist"
        conditions.append(condition("BrokerReady", False, "BrokerDoesNotExist", missing))
    if isinstance(targets.subscriber, UnresolvedDestination):
        conditions.append(condition("SubscriberResolved", False, "Unresolved", str(targets.subscriber)))
    else:
        st["subscriberUri"] = targets.subscriber
        conditions.append(condition("SubscriberResolved", True))
    if isinstance(targets.delivery, UnresolvedDestination):
        conditions.append(condition("DeadLetterSinkResolved", False, "Unresolved", str(targets.delivery)))
    else:
        if targets.delivery.dead_letter_sink:
            st["deadLetterSinkUri"] = targets.delivery.dead_letter_sink
        conditions.append(condition("DeadLetterSinkResolved", True))
    conditions.insert(0, ready(conditions))
    st["conditions"] = conditions
    return st


@dataclass(slots=True)
class _Recording:
    """What stamping needs during one apply only."""

    previous: Statuses | None
    now: str
    shared: dict[Any, Any] = field(default_factory=dict)
    """Equal condition dicts and equal tuples of them, shared through the apply."""


class Statuses:
    """The statuses of one apply's resources: filled by :meth:`record` during the apply,
    read through :meth:`view` afterwards (see the module docstring)."""

    __slots__ = ("_declared", "_recording", "_stamped")

    def __init__(self, declared: Declared, *, previous: Statuses | None, now: str) -> None:
        """Statuses observed from ``declared``; conditions whose status did not change since
        ``previous`` keep its ``lastTransitionTime``, the others get ``now``."""
        self._declared = declared
        self._stamped: KeyTable[Stamped] = KeyTable()
        self._recording: _Recording | None = _Recording(previous, now)

    def record(self, resource: Resource) -> bool | None:
        """Observe ``resource`` (one of the declared) and keep its stamped conditions. Whether
        it is Ready; ``None`` (and nothing kept) for kinds :func:`observe` leaves out."""
        assert self._recording is not None, "recording has ended"
        st = observe(resource, self._declared)
        if st is None:
            return None
        conditions: list[Condition] = st["conditions"]
        self._stamped[resource.key] = self._stamp(resource.key, conditions, self._recording)
        return conditions[0][1] == "True"

    def done(self) -> None:
        """End recording, letting go of the previous statuses and of what was shared."""
        self._recording = None

    def view(self, key: Key) -> dict[str, Any]:
        """A new status dict for resource ``key`` (``{}`` when none was recorded), with
        ``conditions`` as a new list and ``observedGeneration``."""
        stamped = self._stamped.get(key)
        resource = self._declared.resources.get(key)
        if stamped is None or resource is None:
            return {}
        st = observe(resource, self._declared)
        if st is None:
            return {}
        st["conditions"] = list(stamped)
        st["observedGeneration"] = resource.generation
        return st

    def _stamp(self, key: Key, conditions: list[Condition], recording: _Recording) -> Stamped:
        """``conditions`` as status dicts, ``lastTransitionTime`` kept from the previous status
        unless the condition's status changed. Equal dicts are one object and equal tuples one
        tuple, through ``shared``: 10,000 healthy Triggers hold the same four."""
        previous = recording.previous
        old = previous._stamped.get(key) if previous is not None else None
        before = {c["type"]: c for c in old or ()}
        shared = recording.shared
        stamped: list[dict[str, str]] = []
        for cond in conditions:
            prev = before.get(cond[0])
            since = prev["lastTransitionTime"] if prev and prev["status"] == cond[1] else recording.now
            view = shared.get((cond, since))
            if view is None:  # an empty reason or message is left out
                view = {k: v for k, v in zip(_CONDITION_KEYS, (*cond, since), strict=True) if v}
                shared[(cond, since)] = view
            stamped.append(view)
        result = tuple(stamped)
        # Keyed by identity: the dicts live in ``shared`` for the whole apply.
        same: Stamped = shared.setdefault(tuple(map(id, result)), result)
        return same
