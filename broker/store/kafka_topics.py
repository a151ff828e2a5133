"""The Kafka store's admin client: creates, lists and deletes topics and reads group offsets.

Topics are created explicitly (partitions and replication factor from the config) before
anything produces to or subscribes to them, because a broker that auto-creates topics (tansu
does, on any metadata request naming one) would pick its own partition count. A topic created
here gets ``retention.ms`` from ``retention`` (``dead_retention`` for the dead-letter topic)
when set; an existing topic keeps its own configuration.

With ``create=false`` nothing is created: a topic that does not exist is a
:class:`~broker.errors.StoreError` (not retriable: waiting will not help) naming it, raised
by :meth:`Topics.start` for the dead-letter topic and at first use for a log or delivery topic.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from broker.errors import StoreError, StoreUnavailable
from broker.store.kafka_config import (
    RETRY_AFTER,
    KafkaStoreConfig,
    Names,
    client_options,
    kafka_errors,
    stop_quietly,
)

TOPIC_EXISTS = 36
UNKNOWN_TOPIC = 3


class Topics:
    """Topic and offset administration; every call is bounded by the request timeout."""

    def __init__(self, config: KafkaStoreConfig) -> None:
        self._config = config
        self._admin: AIOKafkaAdminClient | None = None
        self._known: set[str] = set()
        """Topics known to exist (created or listed by this handle)."""
        self._coordinators: dict[str, int] = {}

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(**client_options(self._config),
                                    request_timeout_ms=int(self._config.timeout * 1000))
        async with kafka_errors("connecting", self._config.timeout):
            await admin.start()
        self._admin = admin
        if not self._config.create:
            # The one topic every store uses: a setup without it fails on open, not at the
            # first dead letter.
            await self.ensure(Names(self._config.prefix).dead, 1)

    async def stop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await stop_quietly("the admin client", admin.close(), self._config.timeout)

    async def ensure(self, topic: str, partitions: int) -> None:
        """Create ``topic`` unless it exists (a topic someone else created is used as it is);
        with ``create=false``, raise the error naming it instead (see the module docstring)."""
        if topic not in self._known:
            await self.ensure_all({topic: partitions})

    async def ensure_all(self, wanted: Mapping[str, int]) -> None:
        """:meth:`ensure` for each topic with its partition count, in one request."""
        missing = {topic: n for topic, n in wanted.items() if topic not in self._known}
        if not missing:
            return
        config = self._config
        if not config.create:
            found = await self.catalog(config.prefix)
            for topic, partitions in missing.items():
                if topic not in found:
                    raise StoreError(f"the Kafka store needs topic {topic} ({partitions} partition"
                                     f"{'s' if partitions > 1 else ''}), which does not exist, and its URL "
                                     "says create=false: create it (see docs/scaling.md) or set create=true",
                                     retriable=False)
            return
        dead = Names(config.prefix).dead
        admin = self._open()
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        what = f"creating topic {next(iter(missing))}{more}"
        async with kafka_errors(what, config.timeout):
            response = await admin.create_topics([
                NewTopic(topic, num_partitions=partitions, replication_factor=config.replicas,
                         topic_configs=_settings(config, dead=topic == dead))
                for topic, partitions in missing.items()
            ])
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_EXISTS):
                raise StoreUnavailable(f"Kafka refused to create topic {name}: error {code} {message or ''}",
                                       retry_after=RETRY_AFTER)
        self._known.update(missing)

    async def exists(self, topic: str) -> bool:
        """Whether ``topic`` exists; asks the cluster (without creating it) until it does."""
        if topic in self._known:
            return True
        return topic in await self.catalog(topic)

    async def catalog(self, prefix: str) -> dict[str, int]:
        """Every topic whose name starts with ``prefix``, with its partition count."""
        admin = self._open()
        async with kafka_errors("listing topics", self._config.timeout):
            # No topic list: a metadata request for all topics never creates one.
            described = await admin.describe_topics()
        found = {t["topic"]: len(t["partitions"]) for t in described
                 if t["error_code"] == 0 and t["topic"].startswith(prefix)}
        self._known.update(found)
        return found

    async def delete(self, topic: str) -> None:
        """Delete ``topic`` (and, with it, every group's committed offsets on it)."""
        admin = self._open()
        async with kafka_errors(f"deleting topic {topic}", self._config.timeout):
            response = await admin.delete_topics([topic])
        self._known.discard(topic)
        for name, code in response.topic_error_codes:
            if code not in (0, UNKNOWN_TOPIC):
                raise StoreUnavailable(f"Kafka refused to delete topic {name}: error {code}",
                                       retry_after=RETRY_AFTER)

    async def committed(
        self, group: str, partitions: Collection[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The committed offsets of ``group`` on ``partitions`` (absent: nothing committed)."""
        if not partitions:
            return {}
        admin = self._open()
        coordinator = self._coordinators.get(group)
        try:
            async with kafka_errors(f"reading offsets of group {group}", self._config.timeout):
                if coordinator is None:
                    coordinator = self._coordinators[group] = await admin.find_coordinator(group)
                found = await admin.list_consumer_group_offsets(
                    group, group_coordinator_id=coordinator, partitions=list(partitions))
        except StoreUnavailable:
            self._coordinators.pop(group, None)  # it may have moved: look it up next time
            raise
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    def _open(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise StoreUnavailable("the Kafka store is not open", retry_after=RETRY_AFTER)
        return self._admin


async def learn_topics(client: AIOKafkaClient, topics: Iterable[str]) -> None:
    """Have ``client`` (a producer's) know the partitions of ``topics`` with one metadata update.

    Left to itself a producer fetches metadata at its first send to each topic, one update after
    another, each naming every topic known so far: the first route to 1,000 new subscriptions
    took longer than its timeout."""
    update = None
    for topic in topics:
        if client.cluster.partitions_for_topic(topic) is None:
            update = client.add_topic(topic)  # updates asked for meanwhile are one update
    if update is not None:
        await update


def _settings(config: KafkaStoreConfig, *, dead: bool) -> dict[str, str]:
    """Topic configs of a created topic: its ``retention.ms`` when set."""
    retention = config.dead_retention if dead else config.retention
    return {} if retention is None else {"retention.ms": str(max(1, round(retention * 1000)))}
