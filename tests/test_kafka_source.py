"""KafkaSource against a real Kafka protocol broker (tansu) and a real HTTP sink.

Records are produced with aiokafka; events arrive through the real SinkEmitter and HttpSender
at a RecordingSink. Commits are checked with a second consumer of the same group.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import DeliverySpec
from broker.errors import DeliveryError
from broker.event import Event
from sources.emitter import SinkEmitter
from sources.kafka import KafkaSource, KafkaSourceConfig
from sources.kafka_mapping import java_time
from sources.kafka_offsets import PartitionOffsets
from tests.kafka_server import create_topic
from tests.sinks import Recorded, RecordingSink, Reply, eventually, unused_url

FAST = DeliverySpec(retry=1, backoff_delay=0.01, timeout=2.0)
NS, NAME = "shop", "orders-in"


class Fallback:
    """Records what the emitter gives up on, and the group's committed offset at that moment."""

    def __init__(self, probe: CommitProbe | None = None) -> None:
        self.events: list[Event] = []
        self.committed_then: list[int | None] = []
        self._probe = probe

    async def __call__(self, event: Event, error: DeliveryError) -> None:
        if self._probe is not None:
            self.committed_then.append(await self._probe.committed(0))
        self.events.append(event)


class CommitProbe:
    """Reads a group's committed offsets without joining it."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        self._topic = topic

    async def __aenter__(self) -> CommitProbe:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def committed(self, partition: int) -> int | None:
        value: int | None = await self._consumer.committed(TopicPartition(self._topic, partition))
        return value



@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as server:
        yield server


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.stop()


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"topic-{suffix}", f"group-{suffix}"


def config(bootstrap: str, topic: str, group: str, **options: object) -> KafkaSourceConfig:
    # A short session makes tansu complete a group join in about a second instead of five.
    settings: dict[str, object] = {
        "initial_offset": "earliest",
        "commit_interval": 0.05,
        "stop_timeout": 2.0,
        "session_timeout": 1.0,
    }
    settings.update(options)
    return KafkaSourceConfig(
        namespace=NS,
        name=NAME,
        bootstrap_servers=(bootstrap,),
        topics=(topic,),
        consumer_group=group,
        **settings,  # type: ignore[arg-type]
    )


def emitter(sender: HttpSender, url: str, fallback: Fallback) -> SinkEmitter:
    return SinkEmitter(sender=sender, url=url, delivery=FAST, fallback=fallback)


def kafka_source(
    bootstrap: str,
    topic: str,
    group: str,
    sender: HttpSender,
    url: str,
    *,
    fallback: Fallback | None = None,
    **options: object,
) -> KafkaSource:
    return KafkaSource(
        config(bootstrap, topic, group, **options), emitter(sender, url, fallback or Fallback())
    )


async def produce_numbered(
    producer: AIOKafkaProducer, topic: str, count: int, *, partitions: int = 1
) -> None:
    for i in range(count):
        await producer.send_and_wait(topic, f"n{i}".encode(), key=f"k{i}".encode(), partition=i % partitions)


def offsets(requests: Sequence[Recorded]) -> list[str]:
    return [r.event.id for r in requests if r.event is not None]


async def test_records_arrive_with_knative_mapping(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
    sink: RecordingSink,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic)
    binary = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b-1"),
        ("ce_source", b"/orders"),
        ("ce_type", b"order.created"),
        ("ce_tenant", b"acme"),
        ("content-type", b"application/json"),
        ("traceparent", b"00-1"),
    ]
    structured = b'{"specversion":"1.0","id":"s-1","source":"/s","type":"t","data":{"a":1}}'
    malformed = [("ce_specversion", b"1.0"), ("ce_source", b"/s"), ("ce_type", b"t")]
    await producer.send_and_wait(topic, b'{"total":3}', key=b"k", headers=binary)
    await producer.send_and_wait(
        topic, structured, headers=[("content-type", b"application/cloudevents+json")]
    )
    plain = await producer.send_and_wait(
        topic, b"hello", key=b"order-7", headers=[("Content-Type", b"Text/Plain"), ("X-Trace", b"t1")]
    )
    broken = await producer.send_and_wait(topic, b"{}", headers=malformed)
    source = kafka_source(kafka_bootstrap, topic, group, sender, sink.url_for("/k"))
    await source.start()
    try:
        requests = await sink.wait_for(4, path="/k")
    finally:
        await source.stop()
    events = [r.event for r in requests]
    assert events[0] == Event(
        {
            "specversion": "1.0",
            "id": "b-1",
            "source": "/orders",
            "type": "order.created",
            "tenant": "acme",
            "datacontenttype": "application/json",
        },
        b'{"total":3}',
    )
    assert events[1] == Event({"specversion": "1.0", "id": "s-1", "source": "/s", "type": "t"}, b'{"a":1}')
    assert events[2] == Event(
        {
            "specversion": "1.0",
            "id": "partition:0/offset:2",
            "source": f"/apis/v1/namespaces/{NS}/kafkasources/{NAME}#{topic}",
            "type": "dev.knative.kafka.event",
            "subject": "partition:0#2",
            "time": java_time(plain.timestamp),
            "key": "order-7",
            "partitionkey": "order-7",
            "kafkaheaderxtrace": "t1",
            "datacontenttype": "text/plain",
        },
        b"hello",
    )
    assert events[3] == Event(
        {
            "specversion": "1.0",
            "id": "partition:0/offset:3",
            "source": f"/apis/v1/namespaces/{NS}/kafkasources/{NAME}#{topic}",
            "type": "dev.knative.kafka.event",
            "subject": "partition:0#3",
            "time": java_time(broken.timestamp),
            "kafkaheadercespecversion": "1.0",
            "kafkaheadercesource": "/s",
            "kafkaheadercetype": "t",
        },
        b"{}",
    )
    assert source.status().ready is False  # stopped


async def test_unreachable_sink_goes_to_fallback_then_commits(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic)
    await produce_numbered(producer, topic, 2)
    async with CommitProbe(kafka_bootstrap, group, topic) as probe:
        fallback = Fallback(probe)
        source = kafka_source(kafka_bootstrap, topic, group, sender, unused_url("/k"), fallback=fallback)
        await source.start()
        try:
            await eventually(lambda: len(fallback.events) == 2, what="both records in the fallback")
            await eventually(lambda: committed_is(probe, 0, 2), what="offset 2 committed")
        finally:
            await source.stop()
    assert [e.id for e in fallback.events] == ["partition:0/offset:0", "partition:0/offset:1"]
    # When a record reached the fallback its own offset was not committed yet.
    assert fallback.committed_then[0] == 0
    assert fallback.committed_then[1] in (0, 1)


async def committed_is(probe: CommitProbe, partition: int, expected: int) -> bool:
    return await probe.committed(partition) == expected


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_restart_mid_topic_loses_nothing(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
    sink: RecordingSink,
    ordered: bool,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic, partitions=2)
    total = 40
    await produce_numbered(producer, topic, total, partitions=2)
    sink.script("/k", then=Reply(delay=0.01))
    url = sink.url_for("/k")
    first = kafka_source(kafka_bootstrap, topic, group, sender, url, ordered=ordered, max_in_flight=4)
    await first.start()
    await sink.wait_for(10, path="/k")
    await first.stop()
    delivered_first = len(sink.requests("/k"))
    assert delivered_first < total
    second = kafka_source(kafka_bootstrap, topic, group, sender, url, ordered=ordered, max_in_flight=4)
    await second.start()
    try:
        await eventually(lambda: len(set(offsets(sink.requests("/k")))) == total, what="all delivered")
    finally:
        await second.stop()
    ids = offsets(sink.requests("/k"))
    assert len(ids) == total  # a graceful stop settles in-flight records: no duplicates
    if ordered:
        for partition in (0, 1):
            seen = [int(i.rsplit(":", 1)[1]) for i in ids if i.startswith(f"partition:{partition}/")]
            assert seen == sorted(seen)


async def test_stop_timeout_redelivers_the_record_in_flight(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
    sink: RecordingSink,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic)
    await produce_numbered(producer, topic, 5)
    sink.respond("/k", lambda r: Reply(delay=3.0) if r.event and r.event.id.endswith(":2") else Reply())
    first = kafka_source(kafka_bootstrap, topic, group, sender, sink.url_for("/k"), stop_timeout=0.2)
    await first.start()
    await sink.wait_for(3, path="/k")
    await first.stop()  # record 2 is in flight: cancelled, not committed
    sink.respond("/k", lambda r: Reply())
    second = kafka_source(kafka_bootstrap, topic, group, sender, sink.url_for("/k"))
    await second.start()
    try:
        await sink.wait_for(6, path="/k")
    finally:
        await second.stop()
    assert offsets(sink.requests("/k")) == [f"partition:0/offset:{i}" for i in (0, 1, 2, 2, 3, 4)]


async def test_unordered_keeps_at_most_max_in_flight(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
    sink: RecordingSink,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce_numbered(producer, topic, 24, partitions=2)
    active = 0
    peak = 0

    async def slow(request: Recorded) -> Reply:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.03)
        active -= 1
        return Reply()

    sink.respond("/k", slow)
    url = sink.url_for("/k")
    source = kafka_source(kafka_bootstrap, topic, group, sender, url, ordered=False, max_in_flight=4)
    await source.start()
    try:
        await sink.wait_for(24, path="/k")
    finally:
        await source.stop()
    assert 1 < peak <= 4


async def test_latest_starts_at_the_end_and_remembers_it(
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    sender: HttpSender,
    sink: RecordingSink,
) -> None:
    topic, group = names()
    await create_topic(kafka_bootstrap, topic)
    await produce_numbered(producer, topic, 3)
    async with CommitProbe(kafka_bootstrap, group, topic) as probe:
        source = kafka_source(
            kafka_bootstrap, topic, group, sender, sink.url_for("/k"), initial_offset="latest"
        )
        await source.start()
        await eventually(lambda: committed_is(probe, 0, 3), what="initial offset committed")
        await source.stop()
    # Produced while no source runs: still delivered, because the start position was committed.
    await produce_numbered(producer, topic, 2)
    again = kafka_source(kafka_bootstrap, topic, group, sender, sink.url_for("/k"), initial_offset="latest")
    await again.start()
    try:
        await sink.wait_for(2, path="/k")
    finally:
        await again.stop()
    assert offsets(sink.requests("/k")) == ["partition:0/offset:3", "partition:0/offset:4"]


async def test_unreachable_kafka_is_reported_not_ready(sender: HttpSender, sink: RecordingSink) -> None:
    address = unused_url().removeprefix("http://").rstrip("/")
    source = KafkaSource(config(address, "t", "g"), emitter(sender, sink.url_for("/k"), Fallback()))
    await source.start()
    try:
        await eventually(lambda: source.status().reason == "KafkaUnavailable", what="KafkaUnavailable")
        assert source.status().ready is False
        assert address in source.status().message
    finally:
        await source.stop()


@pytest.mark.parametrize(
    ("taken", "finished", "committable"),
    [
        ([5, 6, 7], [], None),
        ([5, 6, 7], [5], 6),
        ([5, 6, 7], [6, 7], None),
        ([5, 6, 7], [6, 7, 5], 8),
        ([5, 9, 12], [5, 9], 10),
    ],
)
def test_committable_offset_is_contiguous(
    taken: list[int], finished: list[int], committable: int | None
) -> None:
    tracker = PartitionOffsets()
    for offset in taken:
        tracker.take(offset)
    for offset in finished:
        tracker.finish(offset)
    assert tracker.committable == committable
    assert tracker.first == taken[0]
