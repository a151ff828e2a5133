"""One YAML document into one typed resource, checked as Knative's admission webhook would.

Supported kinds: ``Broker`` and ``Trigger`` (``eventing.knative.dev/v1``) and ``IntegrationSink``
(``sinks.knative.dev/v1alpha1``, ``spec.log`` only). Anything else is refused as not supported
yet, never silently ignored. Unknown fields are refused at every level. Server-set metadata
(``uid``, ``resourceVersion``, ``managedFields``, ...) and ``status`` are ignored, so the output
of ``kubectl get -o yaml`` loads.

Annotations Weir reads:

* ``eventing.knative.dev/broker.class`` (Broker): any non-empty class; Weir runs
  ``MTChannelBasedBroker``, ``Kafka``, ``KafkaNamespaced``, ``Weir`` and every other class the
  same way. Immutable.
* ``kafka.eventing.knative.dev/delivery.order`` (Trigger): ``ordered`` or ``unordered`` (default).
* ``weir.dev/max-in-flight`` (Trigger): a positive integer, deliveries in flight at once.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from triggers.filters import check_filters
from weir.manifests.duck import delivery, destination, kref
from weir.manifests.fields import (
    MISSING,
    Problems,
    boolean,
    describe,
    dns_label,
    dns_subdomain,
    join,
    obj,
    one_of,
    quote,
    string,
    string_map,
)
from weir.manifests.frozen import freeze
from weir.manifests.model import (
    BROKER_CLASS_ANNOTATION,
    Broker,
    IntegrationSink,
    Origin,
    Resource,
    Trigger,
)

EVENTING_V1 = "eventing.knative.dev/v1"
SINKS_V1ALPHA1 = "sinks.knative.dev/v1alpha1"
DEFAULT_NAMESPACE = "default"
DELIVERY_ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
MAX_IN_FLIGHT_ANNOTATION = "weir.dev/max-in-flight"

_METADATA = ("name", "namespace", "annotations", "labels", "generateName")
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
)
_LOG_STRINGS = ("loggerName", "marker")
_LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG", "TRACE", "OFF")
_LOG_FLAGS = (
    "logMask",
    "multiline",
    "showAllProperties",
    "showBody",
    "showBodyType",
    "showExchangePattern",
    "showHeaders",
    "showProperties",
    "showStreams",
    "showCachedStreams",
)
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,8}")
_NO_STRINGS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    """The fields every kind shares, already validated."""

    api_version: str
    kind: str
    namespace: str
    name: str
    annotations: dict[str, str]
    labels: dict[str, str]
    spec: dict[str, Any]
    origin: Origin

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for any :class:`Resource` subclass, ``spec`` made compact
        (:func:`weir.manifests.frozen.freeze`)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields["spec"] = freeze(self.spec)
        # Most resources have no annotations or labels: one shared empty map serves them all.
        fields["annotations"] = self.annotations or _NO_STRINGS
        fields["labels"] = self.labels or _NO_STRINGS
        return fields


def annotation_path(key: str) -> str:
    return join("metadata.annotations", key)


def read(data: Any, origin: Origin, problems: Problems) -> tuple[Resource | None, str]:
    """The resource ``data`` declares (``None`` when it has problems) and how to name the document
    in messages: ``Kind namespace/name``, or ``document #N`` when it has no usable name."""
    label = f"document #{origin.index}"
    before = len(problems)
    if not isinstance(data, dict):
        problems.add(
            "", f"a manifest must be an object with apiVersion, kind and metadata, got {describe(data)}"
        )
        return None, label
    top = obj(data, "", problems, known=("apiVersion", "kind", "metadata", "spec", "status"))
    if top is None:
        return None, label
    api_version = string(top.get("apiVersion"), "apiVersion", problems, required=True)
    kind = string(top.get("kind"), "kind", problems, required=True)
    if top.get("metadata") is None:
        problems.add("metadata", MISSING)
        return None, label
    metadata = obj(top["metadata"], "metadata", problems, known=_METADATA, ignored=_SERVER_METADATA)
    if metadata is None:
        return None, label
    if "generateName" in metadata:
        problems.add("metadata.generateName", "not supported: set metadata.name")
    name = dns_subdomain(metadata.get("name"), "metadata.name", problems, required=True)
    raw_namespace = metadata.get("namespace")
    namespace = dns_label(raw_namespace, "metadata.namespace", problems) or DEFAULT_NAMESPACE
    if kind is not None and name is not None:
        shown = raw_namespace if isinstance(raw_namespace, str) and raw_namespace else namespace
        label = f"{kind} {shown}/{name}"
    annotations = string_map(metadata.get("annotations"), "metadata.annotations", problems)
    labels = string_map(metadata.get("labels"), "metadata.labels", problems)
    if api_version is None or kind is None:
        return None, label
    build = all_kinds().get((api_version, kind))
    if build is None:
        problems.add("", f"kind {kind} (apiVersion {api_version}) is not supported yet")
        return None, label
    raw_spec = top.get("spec")
    spec = {} if raw_spec is None else obj(raw_spec, "spec", problems, known=build.fields)
    if spec is None or name is None:
        return None, label
    common = _Common(
        api_version=api_version,
        kind=kind,
        namespace=namespace,
        name=name,
        annotations=annotations,
        labels=labels,
        spec=raw_spec or {},
        origin=origin,
    )
    resource = build.build(common, spec, problems)
    return (resource if len(problems) == before else None), label


def _broker(common: _Common, spec: dict[str, Any], problems: Problems) -> Broker:
    broker_class = common.annotations.get(BROKER_CLASS_ANNOTATION)
    if broker_class is not None and not broker_class.strip():
        problems.add(annotation_path(BROKER_CLASS_ANNOTATION), "must not be empty")
    if spec.get("config") is not None:
        kref(spec["config"], "spec.config", problems)
    return Broker(**common.fields(), delivery=delivery(spec.get("delivery"), "spec.delivery", problems))


def _trigger(common: _Common, spec: dict[str, Any], problems: Problems) -> Trigger | None:
    broker = _trigger_broker(common.namespace, spec, problems)
    subscriber = destination(spec.get("subscriber"), "spec.subscriber", problems, required=True)
    options = delivery(spec.get("delivery"), "spec.delivery", problems)
    for problem in check_filters(spec.get("filter"), spec.get("filters")):
        problems.add(problem.path, problem.reason)
    ordered = _delivery_order(common.annotations, problems)
    max_in_flight = _max_in_flight(common.annotations, problems)
    if broker is None or subscriber is None:
        return None
    return Trigger(
        **common.fields(),
        broker=broker,
        delivery=options,
        ordered=ordered,
        max_in_flight=max_in_flight,
    )


def _trigger_broker(namespace: str, spec: dict[str, Any], problems: Problems) -> str | None:
    """``spec.broker``, or the name in ``spec.brokerRef`` (exactly one of them is set)."""
    name = string(spec.get("broker"), "spec.broker", problems)
    raw_ref = spec.get("brokerRef")
    if raw_ref is None:
        if name is None and spec.get("broker") in (None, ""):
            problems.add("spec.broker", f"{MISSING} (or spec.brokerRef)")
        return name
    if spec.get("broker") not in (None, ""):
        problems.add("spec.broker, spec.brokerRef", "expected exactly one, got both")
        return None
    ref = kref(raw_ref, "spec.brokerRef", problems)
    if ref is None:
        return None
    if (ref.api_version, ref.kind) != (EVENTING_V1, "Broker"):
        problems.add(
            "spec.brokerRef",
            f"must refer to a Broker ({EVENTING_V1}), got {ref.kind} ({ref.api_version})",
        )
        return None
    if ref.namespace not in (None, namespace):
        problems.add(
            "spec.brokerRef.namespace",
            f"{quote(ref.namespace or '')} must be empty or the Trigger's namespace {quote(namespace)}",
        )
        return None
    return ref.name


def _delivery_order(annotations: dict[str, str], problems: Problems) -> bool:
    raw = annotations.get(DELIVERY_ORDER_ANNOTATION)
    path = annotation_path(DELIVERY_ORDER_ANNOTATION)
    return one_of(raw, path, problems, ("ordered", "unordered")) == "ordered"


def _max_in_flight(annotations: dict[str, str], problems: Problems) -> int | None:
    raw = annotations.get(MAX_IN_FLIGHT_ANNOTATION)
    if raw is None:
        return None
    if not _POSITIVE_INT.fullmatch(raw.strip()):
        problems.add(annotation_path(MAX_IN_FLIGHT_ANNOTATION), f"{quote(raw)} is not a positive integer")
        return None
    return int(raw)


def _integration_sink(common: _Common, spec: dict[str, Any], problems: Problems) -> IntegrationSink | None:
    raw_log, aws = spec.get("log"), spec.get("aws")
    if raw_log is not None and aws is not None:
        problems.add("spec", "only one sink type can be set")
    elif aws is not None:
        problems.add("spec.aws", "not supported yet (Weir runs IntegrationSinks with spec.log only)")
    elif raw_log is None:
        problems.add("spec", "at least one sink type must be specified (spec.log)")
    if raw_log is None:
        return None
    log = obj(raw_log, "spec.log", problems, known=(*_LOG_STRINGS, "level", *_LOG_FLAGS))
    if log is None:
        return None
    for key in _LOG_STRINGS:
        string(log.get(key), join("spec.log", key), problems)
    one_of(log.get("level"), "spec.log.level", problems, _LOG_LEVELS)
    for key in _LOG_FLAGS:
        boolean(log.get(key), join("spec.log", key), problems)
    return IntegrationSink(**common.fields(), log=log)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Kind:
    fields: tuple[str, ...]
    """The ``spec`` fields Knative defines for the kind."""
    build: Callable[[_Common, dict[str, Any], Problems], Resource | None]


_KINDS: dict[tuple[str, str], _Kind] = {
    (EVENTING_V1, "Broker"): _Kind(fields=("config", "delivery"), build=_broker),
    (EVENTING_V1, "Trigger"): _Kind(
        fields=("broker", "brokerRef", "filter", "filters", "subscriber", "delivery"), build=_trigger
    ),
    (SINKS_V1ALPHA1, "IntegrationSink"): _Kind(fields=("log", "aws"), build=_integration_sink),
}


Kind = _Kind
Common = _Common
"""Public names for modules that add kinds: see :data:`EXTRA_KIND_MODULES`."""

EXTRA_KIND_MODULES = [
    "weir.manifests.source_kinds",
    "weir.manifests.source_kinds_http",
    "weir.manifests.source_kinds_kafka",
]
"""Modules defining more kinds, each as ``KINDS: dict[(apiVersion, kind), Kind]``. They are
imported on first use (they import this module), and one that does not exist is skipped."""


@functools.cache
def all_kinds() -> dict[tuple[str, str], _Kind]:
    """Every supported kind: the ones above plus those of :data:`EXTRA_KIND_MODULES`."""
    kinds = dict(_KINDS)
    for name in EXTRA_KIND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        kinds.update(module.KINDS)
    return kinds
