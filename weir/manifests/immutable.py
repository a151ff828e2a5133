"""Fields that cannot change once a resource exists, as Knative's webhook enforces on update.

* Trigger: the Broker it subscribes to (``spec.broker``, or ``spec.brokerRef``'s name; moving
  from one form to the other for the same Broker is not a change).
* Broker: ``spec.config`` and the ``eventing.knative.dev/broker.class`` annotation (an absent
  annotation counts as ``MTChannelBasedBroker``, the class Knative fills in).
* KafkaSource: ``spec.consumerGroup`` (the committed offsets belong to the group).

To change one, delete the resource (remove it from the manifests and apply), then declare it
again: that is a new resource with a new history, exactly as with ``kubectl``.
"""

from __future__ import annotations

import json
from typing import Any

from weir.manifests.kinds import annotation_path
from weir.manifests.model import BROKER_CLASS_ANNOTATION, Broker, Resource, Trigger


def check_immutable(old: Resource, new: Resource) -> list[str]:
    """Problems (one line each, located at ``new``'s document) for every immutable field that
    differs between ``old`` (the applied resource) and ``new`` (same kind, namespace and name)."""
    changes: list[tuple[str, Any, Any]] = []
    if isinstance(old, Trigger) and isinstance(new, Trigger):
        changes.append(("spec.broker", old.broker, new.broker))
    elif old.kind == "KafkaSource" and new.kind == "KafkaSource":
        # Compared after defaulting: omitting the field keeps the derived group name.
        changes.append(
            ("spec.consumerGroup", getattr(old, "consumer_group", None), getattr(new, "consumer_group", None))
        )
    elif isinstance(old, Broker) and isinstance(new, Broker):
        changes.append(("spec.config", old.spec.get("config"), new.spec.get("config")))
        changes.append((annotation_path(BROKER_CLASS_ANNOTATION), old.broker_class, new.broker_class))
    return [
        f"{new.origin.where}: {new.label}: {path}: immutable field changed from {_show(was)} to "
        f"{_show(now)}; remove the {new.kind}, apply, then declare it again"
        for path, was, now in changes
        if was != now
    ]


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, sort_keys=True, default=str)
