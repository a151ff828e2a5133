"""``kafka://``: an :class:`~broker.store.base.EventStore` on Kafka (aiokafka), shared by every
Weir process that names the same cluster and topic prefix.

URL: ``kafka://HOST:PORT[,HOST:PORT...][?option=value&...]`` with the options

=================== ======= ====================================================================
``prefix``          weir    start of every topic and group name (several stores, one cluster)
``partitions``      4       partitions per delivery topic: handles claiming one subscription at once
``replicas``        1       replication factor of created topics (3 on a production cluster)
``lease_ttl``       6       seconds: router group session, how long a dead router keeps its leases
``claim_lease``     6       seconds: dispatcher group session, how long a dead handle keeps its claims
``timeout``         2       seconds one Kafka call may take before StoreUnavailable
``buffer``          500     deliveries fetched ahead per subscription before its partitions pause
                            (and its deliveries in fan records move to its topic)
``retention``       none    seconds: ``retention.ms`` of created log and delivery topics (older
                            records are deleted, consumed or not); none: the cluster's default
``dead_retention``  none    seconds: ``retention.ms`` of the dead-letter topic when created
``commit_interval`` 0.1     seconds: finished deliveries and routed cursors are committed at most
                            this often (a crash delivers again what it had not covered); 0: at
                            every call, before it returns
``create``          true    false: fail (naming it) instead of creating a topic
=================== ======= ====================================================================

The names match the ``nats://`` store's where they mean the same. Topic settings apply when
the store creates a topic; an existing one keeps its own. ``retention`` must exceed the longest
outage to ride out. With ``create=false`` the dead-letter topic must exist on open, each log
and delivery topic at its first use (:mod:`broker.store.kafka_topics`); forget still deletes.

Apache Kafka refuses sessions below 6 s by default (``group.min.session.timeout.ms``). The
store refuses sessions below 1 s (see below); tests use 1 s, as tansu takes about
max(1 s, session / 2) for every group join (twice that when a member joins an active group).

Layout (topics are created explicitly, see :mod:`broker.store.kafka_topics`):

* ``<prefix>.log.<ns>.<broker>``, one partition: one record per :meth:`KafkaStore.append`
  holding all its events (all-or-nothing), produced with ``acks=all`` and acknowledged only
  after Kafka's ack. Entry seqs are ``(offset + 1) * 1_000_000 + index``, so an append holds at
  most 1,000,000 events (:mod:`broker.store.kafka_codec`). Read by a group-less consumer
  (:mod:`broker.store.kafka_reader`); :meth:`~KafkaStore.wait` is a long-poll fetch.
* Leases and cursors: the group ``<prefix>-routers`` (:mod:`broker.store.kafka_router`); the
  cursor is that group's committed "offset", which holds the routed seq.
* ``<prefix>.dl.<ns>.<trigger>``, ``partitions`` partitions: pending deliveries, each with its
  own copy of the event, keyed by the event's ``partitionkey``; without one, an ordered
  subscription's deliveries share the key ``""`` (one partition, routing order) and an
  unordered one's get no key (spread over the partitions). A record holds a bundle of up to 64
  deliveries of one route sharing a key (:mod:`broker.store.bundle`), one for an ordered
  subscription.
  When a route has deliveries for two or more unordered subscriptions, theirs go instead in
  fan records (:mod:`broker.store.fan`) on ``<prefix>.dl._fan`` (``partitions`` partitions,
  no key), which every handle's group member follows (:mod:`broker.store.kafka_intake`).
  :meth:`~KafkaStore.route` produces them, awaits every ack, then moves the cursor. Kafka has no
  dedup by id: a route replayed after a crash between the two produces its deliveries again
  (duplicates, at least once); a replay of a completed route is ignored (the cursor is past
  it), and a handle skips a second copy of a delivery it already buffers.
* Claims: the group ``<prefix>-dispatchers`` (:mod:`broker.store.kafka_claims`): partition
  ownership decides who claims what; finishing commits offsets, at most every
  ``commit_interval`` seconds (:mod:`broker.store.kafka_pace`).
* ``<prefix>.dead``, one partition: dead letters as JSON keyed by log name, oldest first.
  Writing one and finishing its delivery are two steps (no transaction): a crash between them
  delivers it again and may record it twice.

Deliveries of one partition go to one handle at a time, so another handle cannot claim any of
them while this one holds one (it gets the subscription's other partitions). Stats and limits:
:mod:`broker.store.kafka_usage`. Connection loss, timeouts and broker errors become
:class:`~broker.errors.StoreUnavailable` (``retry_after`` 1 s) within ``timeout``;
the clients reconnect on their own once Kafka is back. :meth:`KafkaStore.forget` deletes the
subscription's topic (with its committed offsets); a process still subscribed to it may have
Kafka re-create it empty until it forgets the subscription too.

What tansu (the Kafka-protocol broker the tests run against) does not do, and what the store
does instead:

* It drops commit metadata, where the exact routed seq of a route ending inside a multi-event
  record would go: the cursor is committed as the "offset" value itself.
* It answers ListOffsets with the first offset of the partition's last record batch plus one,
  too low when that batch holds several records: ends also come from fetch high watermarks
  and this handle's own produce acks (:mod:`broker.store.kafka_usage`).
* With sessions below 1 s it completes a rebalance without the members already in the group,
  which keep their partitions (two lease holders): ``lease_ttl``/``claim_lease`` must be
  at least 1 s.
* It does not support DeleteRecords (the connection drops): forgetting deletes the topic.
* Group offsets can only be listed for named partitions (a request for all of them fails).
* A member that leaves while another member's JoinGroup is pending stays the group's leader:
  the joining member's SyncGroup then fails with REBALANCE_IN_PROGRESS at every retry and the
  group never forms again (seen for 30 s, a new member included). Tests that stop one handle
  while another joins wait for the join to finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from broker.errors import EventTooLarge, StoreUnavailable
from broker.event import Event
from broker.store.base import DeadLetter, Delivery, LogEntry, StoreStats
from broker.store.dead_json import decode_dead_letter, encode_dead_letter
from broker.store.kafka_claims import Claims
from broker.store.kafka_codec import FAN, SEQ_SPAN, encode_events, route_records
from broker.store.kafka_config import (
    RETRY_AFTER,
    KafkaStoreConfig,
    Names,
    client_options,
    kafka_config_from_url,
    kafka_errors,
    stop_quietly,
)
from broker.store.kafka_reader import LogReader
from broker.store.kafka_router import RouterGroup
from broker.store.kafka_topics import Topics, learn_topics
from broker.store.kafka_usage import Usage
from broker.store.memory import check_route

log = logging.getLogger(__name__)

MAX_RECORD = 8 << 20
"""Largest record the producer sends (bytes); the broker's own limit may be lower."""
BATCH_BYTES = 512 << 10
"""Bytes the producer gathers per partition into one batch. aiokafka keeps one produce request
in flight per broker, so appends made during a round trip wait for the next one; at aiokafka's
default (16 KiB, about ten 1 KB events) that capped ingress and made appends queue past the
request timeout under load. Below Kafka's default ``message.max.bytes`` (1 MiB)."""


def kafka_store_from_url(
    url: str, *, max_events: int | None = None, max_bytes: int | None = None
) -> KafkaStore:
    """The store a ``kafka://`` URL names, not opened yet; ``ValueError`` for an invalid URL."""
    return KafkaStore(kafka_config_from_url(url), max_events=max_events, max_bytes=max_bytes)


@dataclass(slots=True)
class _Session:
    topics: Topics
    producer: AIOKafkaProducer
    reader: LogReader
    router: RouterGroup
    claims: Claims
    usage: Usage
    dead: list[tuple[bytes, DeadLetter]] = field(default_factory=list)
    """Dead letters read so far (every log), with their keys."""
    dead_next: int = 0


class KafkaStore:
    """Event store on Kafka; see the module docstring."""

    def __init__(self, config: KafkaStoreConfig, *, max_events: int | None = None,
                 max_bytes: int | None = None) -> None:
        self._config = config
        self._names = Names(config.prefix)
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._session: _Session | None = None
        self._watchers: list[Callable[[Collection[str]], None]] = []

    @property
    def config(self) -> KafkaStoreConfig:
        return self._config

    async def open(self) -> None:
        """Connect (admin client and producer); consumers start when first needed, and no
        call waits for a group join."""
        if self._session is not None:
            return
        config = self._config
        topics = Topics(config)
        producer = AIOKafkaProducer(**client_options(config), acks="all", max_request_size=MAX_RECORD,
                                    max_batch_size=BATCH_BYTES, request_timeout_ms=int(config.timeout * 1000))
        try:
            await topics.start()
            async with kafka_errors("connecting", config.timeout):
                await producer.start()
        except BaseException:
            await stop_quietly("the producer", producer.stop(), config.timeout)
            await stop_quietly("the admin client", topics.stop(), config.timeout)
            raise
        reader = LogReader(config, self._names, topics)
        router = RouterGroup(config, self._names, topics)
        claims = Claims(config, self._names, topics, producer)
        for notify in self._watchers:
            claims.watch(notify)
        usage = Usage(names=self._names, topics=topics, reader=reader, router=router, claims=claims,
                      max_events=self._max_events, max_bytes=self._max_bytes)
        self._session = _Session(topics, producer, reader, router, claims, usage)

    async def close(self) -> None:
        """Commit finished deliveries, leave both groups (leases and unfinished claims move to
        other handles at once) and disconnect. Idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await self._shut(session, session.claims.stop(session.producer), session.router.stop())

    async def abandon(self) -> None:
        """Disconnect without committing or leaving the groups, as if the process died: other
        handles get the leases and claims after ``lease_ttl``/``claim_lease`` (for tests)."""
        session, self._session = self._session, None
        if session is not None:
            await self._shut(session, session.claims.abandon(), session.router.abandon())

    async def _shut(self, session: _Session, claims: Awaitable[None], router: Awaitable[None]) -> None:
        # Each part bounds and logs its own clients' stops; this bounds the part.
        timeout = 4 * self._config.timeout
        await stop_quietly("claims", claims, timeout)
        await stop_quietly("leases", router, timeout)
        await stop_quietly("the log reader", session.reader.stop(), timeout)
        await stop_quietly("the producer", session.producer.stop(), timeout)
        await stop_quietly("the admin client", session.topics.stop(), timeout)

    async def append(self, log: str, events: Sequence[Event]) -> None:
        session = self._open()
        if not events:
            return
        if len(events) > SEQ_SPAN:
            raise EventTooLarge(f"one append holds at most {SEQ_SPAN} events, not {len(events)}")
        value, sizes = encode_events(events)
        count, size = len(events), sum(sizes)
        await session.usage.reserve(count, size)
        topic = self._names.log(log)
        try:
            await session.topics.ensure(topic, 1)
            # Longer than the producer's own request timeout, so its error (not ours) ends a
            # send that Kafka never acknowledged.
            async with kafka_errors(f"appending to {log}", 2 * self._config.timeout):
                sent = await session.producer.send_and_wait(topic, value, partition=0)
        except BaseException:
            session.usage.unreserve(count, size)
            raise
        session.reader.remember(log, sent.offset, events, sizes)

    async def wait(self, log: str, after: int, timeout: float) -> None:
        session = self._session
        if session is not None:
            await session.reader.wait(log, after, timeout)

    async def read(self, log: str, after: int, limit: int) -> Sequence[LogEntry]:
        return await self._open().reader.read(log, after, limit)

    async def head(self, log: str) -> int:
        return await self._open().reader.head(log)

    async def cursor(self, log: str) -> int:
        session = self._open()
        seq = await session.router.cursor(log)
        session.reader.routed(log, seq)
        return seq

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        session = self._open()
        in_order = set(ordered)
        # The bound check asks Kafka for the log's end only when this handle does not know it
        # reaches ``upto`` (it does when it read those entries, the router's case).
        last = upto if session.reader.holds(log, upto) else await session.reader.head(log)
        check_route(log, last, upto, deliveries)
        previous = await session.router.cursor(log)
        if upto <= previous:
            return
        wanted = [(seq, name) for seq, name in deliveries if seq > previous]  # bundling sorts
        events = await session.reader.entries(log, sorted({seq for seq, _ in wanted}))
        records = route_records(log, wanted, events, in_order)
        names = self._names
        topics = {name: names.fan if name == FAN else names.delivery(name) for name, _, _ in records}
        await session.topics.ensure_all(dict.fromkeys(topics.values(), self._config.partitions))
        if wanted:
            async with kafka_errors(f"routing {log}", 2 * self._config.timeout):
                await learn_topics(session.producer.client, topics.values())
                acks = []
                for name, key, value in records:
                    acks.append(await session.producer.send(topics[name], value, key=key))
                for sent in await asyncio.gather(*acks):
                    tp = TopicPartition(sent.topic, sent.partition)
                    session.usage.produced(tp, sent.offset)
                    session.claims.wake(tp)
        await session.router.commit(log, upto)
        session.reader.routed(log, upto)

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        if limit <= 0:
            return []
        return await self._open().claims.claim(subscription, limit)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        self._open().claims.release(subscription, seqs)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        await self._open().claims.finish(subscription, seqs)

    async def dead_letter(self, record: DeadLetter) -> None:
        session = self._open()
        topic = self._names.dead
        await session.topics.ensure(topic, 1)
        async with kafka_errors("recording a dead letter", 2 * self._config.timeout):
            await session.producer.send_and_wait(topic, encode_dead_letter(record), key=record.log.encode(),
                                                 partition=0)
        await session.claims.finish(record.subscription, [record.seq])

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        session = self._open()
        for raw in await session.reader.scan(self._names.dead, session.dead_next):
            session.dead_next = raw.offset + 1
            with contextlib.suppress(ValueError, KeyError, TypeError):
                session.dead.append((raw.key or b"", decode_dead_letter(raw.value or b"")))
        key = log.encode()
        return [record for found, record in session.dead if found == key]

    async def forget(self, subscription: str) -> None:
        session = self._open()
        topic = self._names.delivery(subscription)
        await session.claims.forget(subscription)
        await session.topics.delete(topic)
        session.usage.deleted(topic)

    async def lease(self, log: str) -> bool:
        return await self._open().router.lease(log)

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        """``notify`` hears of subscriptions (among those this handle claims for) that got
        deliveries fetched, whoever routed them."""
        self._watchers.append(notify)
        if self._session is not None:
            self._session.claims.watch(notify)

    async def stats(self) -> StoreStats:
        return await self._open().usage.stats()

    def _open(self) -> _Session:
        if self._session is None:
            raise StoreUnavailable("the Kafka store is not open", retry_after=RETRY_AFTER)
        return self._session
