"""KafkaSource (``sources.knative.dev/v1``, also served as ``v1beta1``), checked as Knative does.

Fields (eventing-kafka-broker ``kafka_types.go`` / ``kafka_validation.go``):

* ``bootstrapServers`` and ``topics``: required, non-empty lists (``host:port``; Kafka topic
  names, ``[a-zA-Z0-9._-]``, at most 249 characters).
* ``consumerGroup``: default ``knative-kafka-source-<namespace>-<name>``. Knative's default is
  ``knative-kafka-source-<uid>``; Weir has no UIDs, and a name that survives restarts lets a
  restarted Weir resume from the committed offsets.
* ``initialOffset``: ``earliest`` or ``latest`` (default); ``ordering``: ``ordered`` (default)
  or ``unordered``; ``consumers``: at least 1 (accepted; Weir runs one consumer per source).
* ``delivery``: a DeliverySpec. Absent: Knative's KafkaSource default (10 retries, exponential
  from ``PT0.3S``, ``PT600S`` per attempt). Present: read like every other delivery block
  (:func:`weir.manifests.resolve.delivery_spec`; unset fields are Knative's zero values).
* ``net``: only with SASL and TLS disabled; enabling either is "not supported yet".
* Label ``kafkasources.sources.knative.dev/key-type``: ``string``, ``int``, ``float`` or
  ``byte-array`` (how the record key becomes the ``key`` extension).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import sources.kafka
from broker.delivery.spec import DeliverySpec
from sources.base import Emitter, Source
from sources.kafka_mapping import KEY_TYPE_LABEL, KEY_TYPES, KeyType
from sources.manager import SourcePlan
from weir.manifests.duck import delivery
from weir.manifests.fields import MISSING, Problems, boolean, describe, integer, join, obj, one_of, quote
from weir.manifests.kinds import Common, Kind
from weir.manifests.model import DeliveryOptions
from weir.manifests.resolve import ResolveContext, delivery_spec
from weir.manifests.source_kinds import SOURCE_FIELDS, source_duck
from weir.manifests.source_model import SourceResource

SOURCES_V1 = "sources.knative.dev/v1"
SOURCES_V1BETA1 = "sources.knative.dev/v1beta1"
GROUP_PREFIX = "knative-kafka-source-"

_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_SERVER = re.compile(r"[^\s,:]+:\d{1,5}")
_SASL = ("enable", "user", "password", "type", "tokenProvider", "roleARN")
_TLS = ("enable", "cert", "key", "caCert")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSource(SourceResource):
    """A validated KafkaSource."""

    bootstrap_servers: tuple[str, ...]
    topics: tuple[str, ...]
    consumer_group: str
    initial_offset: Literal["earliest", "latest"] = "latest"
    ordered: bool = True
    consumers: int = 1
    delivery: DeliveryOptions | None = None
    key_type: KeyType = "string"

    def delivery_spec(self, ctx: ResolveContext) -> DeliverySpec:
        """The effective delivery settings. Raises UnresolvedDestination (dead-letter sink)."""
        if self.delivery is None:
            return sources.kafka.DEFAULT_DELIVERY
        return delivery_spec(self.delivery, namespace=self.namespace, ctx=ctx)

    def plan(self, *, sink_uri: str, ctx: ResolveContext) -> SourcePlan:
        """The plan consuming this source's topics. The emitter the control plane makes for it
        must use ``plan.spec.delivery`` and ``plan.spec.ce_overrides``."""
        config = sources.kafka.KafkaSourceConfig(
            namespace=self.namespace,
            name=self.name,
            bootstrap_servers=self.bootstrap_servers,
            topics=self.topics,
            consumer_group=self.consumer_group,
            initial_offset=self.initial_offset,
            ordered=self.ordered,
            key_type=self.key_type,
            delivery=self.delivery_spec(ctx),
            ce_overrides=self.overrides,
        )

        def build(emitter: Emitter) -> Source:
            return sources.kafka.KafkaSource(config, emitter)

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


def _kafka(common: Common, spec: dict[str, Any], problems: Problems) -> KafkaSource | None:
    sink, overrides = source_duck(spec, problems)
    servers = _list(spec.get("bootstrapServers"), "spec.bootstrapServers", problems, _SERVER, "host:port")
    topics = _list(spec.get("topics"), "spec.topics", problems, _TOPIC, "a Kafka topic name")
    group = spec.get("consumerGroup")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        problems.add("spec.consumerGroup", f"must be a non-empty string, got {describe(group)}")
    offset = one_of(spec.get("initialOffset"), "spec.initialOffset", problems, ("earliest", "latest"))
    ordering = one_of(spec.get("ordering"), "spec.ordering", problems, ("ordered", "unordered"))
    consumers = integer(spec.get("consumers"), "spec.consumers", problems, minimum=1, maximum=2**31 - 1)
    options = delivery(spec.get("delivery"), "spec.delivery", problems)
    _net(spec.get("net"), "spec.net", problems)
    key_type = one_of(
        common.labels.get(KEY_TYPE_LABEL), join("metadata.labels", KEY_TYPE_LABEL), problems, KEY_TYPES
    )
    if sink is None or not servers or not topics:
        return None
    return KafkaSource(
        **common.fields(),
        sink=sink,
        ce_overrides=overrides,
        bootstrap_servers=servers,
        topics=topics,
        consumer_group=group if isinstance(group, str) and group.strip() else default_group(common),
        initial_offset="earliest" if offset == "earliest" else "latest",
        ordered=ordering != "unordered",
        consumers=consumers or 1,
        delivery=options,
        key_type=next((k for k in KEY_TYPES if k == key_type), "string"),
    )


def default_group(common: Common) -> str:
    """The consumer group of a KafkaSource without ``spec.consumerGroup``."""
    return f"{GROUP_PREFIX}{common.namespace}-{common.name}"


def _list(value: Any, path: str, problems: Problems, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    """A required, non-empty list of strings each matching ``pattern``."""
    if value is None or value == []:
        problems.add(path, MISSING)
        return ()
    if not isinstance(value, list):
        problems.add(path, f"must be a list, got {describe(value)}")
        return ()
    found: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not pattern.fullmatch(item):
            shown = quote(item) if isinstance(item, str) else describe(item)
            problems.add(join(path, i), f"{shown} is not {what}")
        else:
            found.append(item)
    return tuple(found) if len(found) == len(value) else ()


def _net(value: Any, path: str, problems: Problems) -> None:
    """``net`` is accepted only when it enables neither SASL nor TLS."""
    if value is None:
        return
    fields = obj(value, path, problems, known=("sasl", "tls"))
    if fields is None:
        return
    for name, known in (("sasl", _SASL), ("tls", _TLS)):
        if fields.get(name) is None:
            continue
        part = obj(fields[name], join(path, name), problems, known=known)
        if part is not None and boolean(part.get("enable"), join(join(path, name), "enable"), problems):
            problems.add(join(path, name), "not supported yet (Weir connects to Kafka without SASL or TLS)")


_FIELDS = (
    *SOURCE_FIELDS,
    "bootstrapServers",
    "topics",
    "consumerGroup",
    "initialOffset",
    "ordering",
    "consumers",
    "delivery",
    "net",
)
_KAFKA = Kind(fields=_FIELDS, build=_kafka)

KINDS: dict[tuple[str, str], Kind] = {
    (SOURCES_V1, "KafkaSource"): _KAFKA,
    (SOURCES_V1BETA1, "KafkaSource"): _KAFKA,
}
"""The kinds this module adds (merged by :func:`weir.manifests.kinds.all_kinds`)."""
