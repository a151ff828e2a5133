"""KafkaSource: consume topics in a consumer group and deliver every record as a CloudEvent.

Records become events by :func:`sources.kafka_mapping.record_to_event` and reach the sink through
the source's :class:`~sources.base.Emitter` (retries, dead-letter sink, fallback).

At least once (Knative's ``enable.auto.commit=false`` contract): a record's offset is committed
only after its event's final outcome (the emitter returned: accepted, or recorded by the
dead-letter sink or fallback), and a partition's commit never passes an unfinished record, so a
crash re-delivers everything after the last commit. Commits are batched (every
``commit_interval`` seconds, on stop, on revocation). A newly assigned partition without a
committed offset gets its start position committed at once (Knative's
``InitialOffsetsCommitted``), so ``latest`` does not skip records that arrive while Weir is down.

``ordered`` (Knative's default): one record per partition at a time, partitions in parallel; a
partition with ``max_in_flight`` records waiting is paused until half are done. ``unordered``: up
to ``max_in_flight`` records at once (Knative's ``max.poll.records``, 50).

Stop: fetching ends; waiting records are dropped (not committed); records in flight get
``stop_timeout`` seconds, then are cancelled (not committed: delivered again later, possibly a
second time); finished offsets are committed and the consumer leaves the group. Revocation
commits the revoked partitions' finished offsets and drops their waiting records; a record in
flight finishes uncommitted, so the new owner delivers it again. When Kafka cannot be reached,
:meth:`KafkaSource.start` still returns; the status is ``Ready=False`` (``KafkaUnavailable``) and
the source retries after 1, 2, 4 ... 30 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from broker.bindings.json_format import to_json
from broker.delivery.spec import DeliverySpec
from sources.base import Emitter, SourceStatus
from sources.kafka_mapping import KafkaRecord, KeyType, record_to_event
from sources.kafka_offsets import PartitionOffsets

log = logging.getLogger("weir.sources.kafka")

_POLL_MS = 200
_MAX_BACKOFF = 30.0

DEFAULT_DELIVERY = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.3, timeout=600.0)
"""Knative's KafkaSource without ``spec.delivery``: 10 retries from 0.3 s, 600 s per attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSourceConfig:
    """One KafkaSource, validated. Durations are seconds."""

    namespace: str
    name: str
    bootstrap_servers: tuple[str, ...]
    topics: tuple[str, ...]
    consumer_group: str
    initial_offset: Literal["earliest", "latest"] = "latest"
    ordered: bool = True
    key_type: KeyType = "string"
    max_in_flight: int = 50
    commit_interval: float = 1.0
    stop_timeout: float = 10.0
    session_timeout: float = 10.0
    """The group session timeout (aiokafka's default); heartbeats go every third of it."""
    delivery: DeliverySpec = DEFAULT_DELIVERY
    """How the emitter delivers each event (the control plane builds the emitter with it)."""
    ce_overrides: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Partition:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    lane: asyncio.Queue[KafkaRecord | None] = field(default_factory=asyncio.Queue)
    """Ordered mode: records waiting, ``None`` ends the worker."""
    paused: bool = False


class KafkaSource:
    """A running KafkaSource; see the module docstring for commit, ordering and stop semantics."""

    def __init__(self, config: KafkaSourceConfig, emitter: Emitter) -> None:
        self._config = config
        self._emitter = emitter
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        """Unordered mode: the records in flight."""
        self._workers: set[asyncio.Task[None]] = set()
        """Ordered mode: one task per partition lane, including lanes of revoked partitions."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._status = SourceStatus(ready=False, reason="NotStarted", message="the source has not started")

    async def start(self) -> None:
        """Begin consuming in the background; returns at once (see the module docstring)."""
        self._runner = asyncio.create_task(self._run(), name=f"kafkasource {self._label}")

    async def stop(self) -> None:
        """Stop consuming, settle in-flight records, commit, leave the group."""
        self._stopping.set()
        runner = self._runner
        if runner is not None:
            # A group join in progress cannot be interrupted gently; past the in-flight grace
            # period plus a session, the runner is cancelled (its cleanup still runs).
            grace = self._config.stop_timeout + self._config.session_timeout
            _, pending = await asyncio.wait({runner}, timeout=grace)
            if pending:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        self._status = SourceStatus(ready=False, reason="Stopped", message="the source was stopped")

    def status(self) -> SourceStatus:
        return self._status

    @property
    def _label(self) -> str:
        return f"{self._config.namespace}/{self._config.name}"

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            consumer = self._consumer()
            try:
                await consumer.start()
                self._status = SourceStatus(ready=True, extra={"consumerGroup": self._config.consumer_group})
                backoff = 1.0
                await self._consume(consumer)
            except KafkaError as exc:
                servers = ",".join(self._config.bootstrap_servers)
                message = f"Kafka at {servers}: {type(exc).__name__}: {exc}"
                log.warning("KafkaSource %s: %s; retrying in %.0f s", self._label, message, backoff)
                self._status = SourceStatus(ready=False, reason="KafkaUnavailable", message=message)
            except Exception as exc:
                log.exception("KafkaSource %s failed; restarting in %.0f s", self._label, backoff)
                message = f"{type(exc).__name__}: {exc}"
                self._status = SourceStatus(ready=False, reason="ConsumerFailed", message=message)
            finally:
                await self._shutdown(consumer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _consumer(self) -> AIOKafkaConsumer:
        config = self._config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=list(config.bootstrap_servers),
            group_id=config.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset=config.initial_offset,
            max_poll_records=config.max_in_flight,
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=max(int(config.session_timeout * 1000 / 3), 1),
        )
        consumer.subscribe(list(config.topics), listener=_Rebalance(self, consumer))
        return consumer

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()
            room = self._throttle(consumer)
            if room <= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _POLL_MS / 1000)
            # Polling even while everything is paused keeps the consumer in its group
            # (max.poll.interval) when the sink is slow.
            timeout = 0 if room <= 0 else _POLL_MS
            batch = await consumer.getmany(timeout_ms=timeout, max_records=max(room, 1))
            for tp, records in batch.items():
                part = self._partitions.get(tp) or self._open(tp)
                for raw in records:
                    self._dispatch(tp, part, _record(raw))
            if time.monotonic() - last_commit >= self._config.commit_interval:
                await self._commit(consumer, self._partitions)
                last_commit = time.monotonic()

    def _throttle(self, consumer: AIOKafkaConsumer) -> int:
        """Pause what has too much work waiting, resume what drained; the records to fetch."""
        limit = self._config.max_in_flight
        assigned = consumer.assignment()
        if not self._config.ordered:
            room = limit - len(self._tasks)
            if room <= 0:
                consumer.pause(*assigned)
            else:
                consumer.resume(*assigned)
            return room
        for tp, part in self._partitions.items():
            waiting = part.lane.qsize()
            if not part.paused and waiting >= limit and tp in assigned:
                consumer.pause(tp)
                part.paused = True
            elif part.paused and waiting <= limit // 2 and tp in assigned:
                consumer.resume(tp)
                part.paused = False
        return limit

    def _open(self, tp: TopicPartition) -> _Partition:
        part = _Partition()
        if self._config.ordered:
            worker = asyncio.create_task(self._lane(part), name=f"kafkasource {self._label} {tp}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        self._partitions[tp] = part
        return part

    def _dispatch(self, tp: TopicPartition, part: _Partition, record: KafkaRecord) -> None:
        part.offsets.take(record.offset)
        if self._config.ordered:
            part.lane.put_nowait(record)
            return
        task = asyncio.create_task(self._process(part, record), name=f"kafkasource {tp}@{record.offset}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _lane(self, part: _Partition) -> None:
        while (record := await part.lane.get()) is not None:
            await self._process(part, record)

    async def _process(self, part: _Partition, record: KafkaRecord) -> None:
        config = self._config
        event = record_to_event(
            record, namespace=config.namespace, name=config.name, key_type=config.key_type
        )
        try:
            await self._emitter.emit(event)
        except Exception:
            # The emitter records undeliverable events itself; if it fails, the log keeps the
            # event so the partition can move on without losing it.
            text = to_json(event).decode()
            log.exception("KafkaSource %s: emitting failed; full event: %s", self._label, text)
        part.offsets.finish(record.offset)

    async def assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Give every assigned partition without a committed offset its start position."""
        for tp in assigned:
            if await consumer.committed(tp) is not None:
                continue
            taken = self._partitions.get(tp)
            first = None if taken is None else taken.offsets.first
            start = first if first is not None else await consumer.position(tp)
            await consumer.commit({tp: start})

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: dict[TopicPartition, _Partition]) -> None:
        due = {
            tp: part.offsets.committable
            for tp, part in partitions.items()
            if part.offsets.committable is not None and part.offsets.committable != part.offsets.committed
        }
        if not due:
            return
        try:
            await consumer.commit(due)
        except KafkaError as exc:
            # Not fatal: the records stay uncommitted and are delivered again after a restart.
            log.warning("KafkaSource %s: commit of %s failed: %s", self._label, due, exc)
            return
        for tp, offset in due.items():
            partitions[tp].offsets.committed = offset

    async def revoke(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Commit the revoked partitions' finished offsets and stop handling them."""
        mine = {tp: self._partitions[tp] for tp in revoked if tp in self._partitions}
        await self._commit(consumer, mine)
        for tp, part in mine.items():
            _end_lane(part)
            del self._partitions[tp]

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        for part in self._partitions.values():
            _end_lane(part)
        running = self._workers | self._tasks
        if running:
            _, late = await asyncio.wait(running, timeout=self._config.stop_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(KafkaError):
            await self._commit(consumer, self._partitions)
        self._partitions.clear()
        with contextlib.suppress(KafkaError):
            await consumer.stop()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    # aiokafka awaits these inside the rebalance; position() and commit() are allowed there.
    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self._source = source
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.revoke(self._consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source.assigned(self._consumer, set(assigned))


def _end_lane(part: _Partition) -> None:
    """Drop the records waiting in an ordered partition and let its worker end."""
    while not part.lane.empty():
        part.lane.get_nowait()
    part.lane.put_nowait(None)


def _record(raw: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    return KafkaRecord(
        topic=raw.topic, partition=raw.partition, offset=raw.offset, timestamp_ms=raw.timestamp,
        key=raw.key, value=raw.value, headers=tuple(raw.headers),
    )  # fmt: skip
