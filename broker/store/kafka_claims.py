"""Claims of the Kafka store: the consumer group ``<prefix>-dispatchers``.

One group member per store handle subscribes to the delivery topic of every subscription the
handle has claimed for (a topic joins on its first :meth:`Claims.claim`). A background task
fetches records into a per-subscription buffer (:mod:`broker.store.kafka_buffer`);
:meth:`~Claims.claim` holds and returns buffered deliveries. A subscription with ``buffer``
deliveries waiting has its partitions paused until half drained, so a stuck subscription never
stops another's fetching.

* finish / dead-letter: the delivery's offset is done; per partition the offset after the
  longest run of done records is committed (at once, awaited; during a rebalance at the
  revocation or after it).
* release: the delivery waits again, in front of its buffer.
* Idle partitions are paused so fetches leave them out (:mod:`broker.store.kafka_idle`).
* Exclusivity: a partition holding a delivery this handle claimed (or finished and could not
  commit yet) is pinned to this handle by the group's assignor
  (:mod:`broker.store.kafka_assign`), so no other live handle is given it. On revocation the
  waiting deliveries of the partition are dropped (whoever owns it next fetches them again from
  the committed offset). This handle's claims end when it closes (leaves the group) or dies (its
  ``claim_lease`` session runs out); the next owner then fetches the unfinished ones again.
* Ordering: deliveries sharing a key share a partition and are buffered in offset order, so
  ``ordered`` needs nothing more here: nobody else holds an earlier delivery of a partition
  this handle owns.
* A second record of a delivery this handle already buffers or holds (a route replayed after a
  crash) is finished on arrival.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from broker.errors import StoreUnavailable
from broker.store.base import Delivery
from broker.store.kafka_assign import StickyAssignor
from broker.store.kafka_buffer import Buffered, SubscriptionBuffer
from broker.store.kafka_codec import decode_delivery
from broker.store.kafka_config import KafkaStoreConfig, Names, group_options, kafka_errors, stop_quietly
from broker.store.kafka_idle import IdlePartitions
from broker.store.kafka_offsets import PartitionState
from broker.store.kafka_topics import Topics

log = logging.getLogger(__name__)

POLL_MS = 500
FETCH_RECORDS = 500


class Claims:
    """This handle's claims; see the module docstring."""

    def __init__(self, config: KafkaStoreConfig, names: Names, topics: Topics) -> None:
        self._config = config
        self._names = names
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._subs: dict[str, SubscriptionBuffer] = {}
        self._by_topic: dict[str, str] = {}
        self._parts: dict[TopicPartition, PartitionState] = {}
        self._owned: set[TopicPartition] = set()
        self._last: set[TopicPartition] = set()
        """The latest assignment, still known during a rebalance (for the assignor)."""
        self._watchers: list[Callable[[Collection[str]], None]] = []
        self._setup = asyncio.Lock()
        self._idle = IdlePartitions(self._throttled)

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        self._watchers.append(notify)

    async def claim(self, subscription: str, limit: int) -> list[Delivery]:
        sub = self._subs.get(subscription) or await self._subscribe(subscription)
        taken = sub.take(limit, self._waiting)
        for item in taken:
            part = self._parts[item.tp]
            part.buffered.discard(item.offset)
            part.held.add(item.offset)
        self._throttle(subscription)
        if not taken:
            # Nothing buffered: let the fetch task (and the group's join) run before the caller
            # asks again, even if it asks in a loop.
            await asyncio.sleep(0)
        return [item.delivery for item in taken]

    def wake(self, tp: TopicPartition) -> None:
        """This handle wrote a delivery to ``tp``: fetch it now if it was paused for idleness."""
        if self._consumer is not None and tp in self._owned:
            self._idle.wake(self._consumer, tp)

    def release(self, subscription: str, seqs: Sequence[int]) -> None:
        sub = self._subs.get(subscription)
        if sub is None:
            return
        back: list[Buffered] = []
        for seq in seqs:
            item = sub.held(seq)
            if item is None:
                continue
            part = self._parts.get(item.tp)
            if part is not None:
                part.held.discard(item.offset)
            if part is None or not part.assigned:
                sub.forget(seq)  # fetched again once the partition is back
                continue
            part.buffered.add(item.offset)
            back.append(item)
        sub.give_back(back)
        self._throttle(subscription)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        sub = self._subs.get(subscription)
        if sub is None:
            return
        for seq in seqs:
            item = sub.held(seq)
            if item is None:
                continue
            sub.forget(seq)
            part = self._parts.get(item.tp)
            if part is not None:
                part.held.discard(item.offset)
                part.finish(item.offset)
        await self._commit()

    async def forget(self, subscription: str) -> None:
        """Stop fetching the subscription and drop its buffer and claims (the store then
        deletes its topic)."""
        topic = self._names.delivery(subscription)
        if self._subs.pop(subscription, None) is None:
            return
        del self._by_topic[topic]
        self._idle.dropped(topic)
        for tp in [tp for tp in self._parts if tp.topic == topic]:
            del self._parts[tp]
        if self._consumer is not None:
            if self._by_topic:
                self._consumer.subscribe(sorted(self._by_topic), listener=_Listener(self))
            else:
                self._consumer.unsubscribe()

    def progress(self) -> dict[TopicPartition, tuple[int, int, int]]:
        """Per owned partition: the offset below which all is finished, how many records
        above it are finished too (not yet committable), and the end seen by the last fetch."""
        consumer = self._consumer
        if consumer is None:
            return {}
        found: dict[TopicPartition, tuple[int, int, int]] = {}
        for tp in self._owned:
            part = self._parts.get(tp)
            base, done = (part.base, len(part.done)) if part is not None else (0, 0)
            found[tp] = (base, done, consumer.highwater(tp) or 0)
        return found

    async def stop(self) -> None:
        """Commit what is finished and leave the group: unfinished claims go to other handles."""
        await self._shut(leave=True)

    async def abandon(self) -> None:
        """Close without committing or leaving the group, as if the process died."""
        await self._shut(leave=False)

    async def _shut(self, *, leave: bool) -> None:
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)
        if leave:
            try:
                await self._commit()
            except StoreUnavailable as exc:
                log.warning("finished deliveries not committed at close (delivered again): %s", exc)
        consumer, self._consumer = self._consumer, None
        self._subs.clear()
        self._by_topic.clear()
        self._parts.clear()
        if consumer is not None:
            # aiokafka sends LeaveGroup on stop only for a generation above 0; tansu numbers a
            # group's first generation 0.
            coordinator = consumer._coordinator
            coordinator.generation = (coordinator.generation or 1) if leave else -1
            await stop_quietly("the dispatcher group member", consumer.stop(), self._config.timeout)

    async def _subscribe(self, subscription: str) -> SubscriptionBuffer:
        async with self._setup:
            sub = self._subs.get(subscription)
            if sub is not None:
                return sub
            topic = self._names.delivery(subscription)
            await self._topics.ensure(topic, self._config.partitions)
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    **group_options(self._config, session=self._config.claim_lease),
                    group_id=self._names.dispatchers,
                    auto_offset_reset="earliest",
                    partition_assignment_strategy=(StickyAssignor(self._assignor_state),),
                )
                async with kafka_errors("joining the dispatcher group", self._config.timeout):
                    await consumer.start()
                self._consumer = consumer
                self._fetcher = asyncio.create_task(self._fetch(consumer), name="weir-kafka-claims")
            sub = self._subs[subscription] = SubscriptionBuffer()
            self._by_topic[topic] = subscription
            # Returns at once: the join runs in the background (about a second with tansu).
            self._consumer.subscribe(sorted(self._by_topic), listener=_Listener(self))
            return sub

    def _assignor_state(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        return {tp for tp, p in self._parts.items() if p.pinned}, set(self._last)

    def _waiting(self, item: Buffered) -> bool:
        part = self._parts.get(item.tp)
        return part is not None and item.offset in part.buffered

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                if not self._by_topic:
                    await asyncio.sleep(POLL_MS / 1000)
                    continue
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=FETCH_RECORDS)
                self._idle.active(batch.keys())
                woke: set[str] = set()
                for tp, records in batch.items():
                    name = self._by_topic.get(tp.topic)
                    if name is not None and tp in self._owned:
                        woke.update(name for record in records if self._take(name, tp, record))
                for name in woke:
                    self._throttle(name)
                if woke:
                    for notify in self._watchers:
                        notify(woke)
                await self._commit()
                await self._idle.check(consumer, self._config.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching deliveries: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(POLL_MS / 1000)

    def _take(self, name: str, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Buffer a fetched record; whether it is new and claimable."""
        offset = record.offset
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionState.starting_at(name, offset)
        if not part.arrive(offset):
            return False
        try:
            delivery = decode_delivery(name, record.value or b"")
        except Exception:
            log.exception("undecodable delivery record %s@%d skipped", tp, offset)
            part.finish(offset)
            return False
        if not self._subs[name].add(Buffered(tp, offset, delivery)):
            part.finish(offset)  # a second record of a delivery already here
            return False
        part.buffered.add(offset)
        return True

    async def _commit(self) -> None:
        consumer = self._consumer
        due = {tp: p.base for tp, p in self._parts.items() if p.assigned and p.due}
        if consumer is None or not due:
            return
        try:
            async with kafka_errors("committing finished deliveries", self._config.timeout):
                await consumer.commit(due)
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, CommitFailedError | IllegalStateError):
                # A rebalance is under way: committed at the revocation, or once the partition
                # (pinned while the commit is due) is assigned again.
                log.info("commit deferred: %s", exc)
                return
            raise
        for tp, offset in due.items():
            part = self._parts.get(tp)
            if part is not None:
                part.sent = max(part.sent, offset)

    def _throttle(self, name: str) -> None:
        sub, consumer = self._subs.get(name), self._consumer
        if sub is None or consumer is None:
            return
        # Called at every claim: the owned partitions are looked up only on a change.
        if not sub.paused and len(sub) >= self._config.buffer:
            consumer.pause(*self._owned_of(name))
            sub.paused = True
        elif sub.paused and len(sub) <= self._config.buffer // 2:
            tps = self._owned_of(name)
            consumer.resume(*tps)
            sub.paused = False
            self._idle.active(tps)

    def _owned_of(self, name: str) -> list[TopicPartition]:
        topic = self._names.delivery(name)
        return [tp for tp in self._owned if tp.topic == topic]

    def _throttled(self, tp: TopicPartition) -> bool:
        name = self._by_topic.get(tp.topic)
        sub = None if name is None else self._subs.get(name)
        return sub is not None and sub.paused

    async def revoked(self, revoked: Collection[TopicPartition]) -> None:
        try:
            await self._commit()
        except StoreUnavailable as exc:
            log.warning("finished deliveries not committed before a rebalance: %s", exc)
        self._owned.difference_update(revoked)
        for tp in revoked:
            part = self._parts.get(tp)
            if part is None:
                continue
            sub = self._subs.get(part.subscription)
            if sub is not None and part.buffered:
                sub.drop_waiting(tp)
            part.revoke()
            if not part.pinned:
                del self._parts[tp]

    def assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._owned = set(assigned)
        self._last = set(assigned)
        self._idle.assigned(assigned)
        consumer = self._consumer
        for tp in assigned:
            part = self._parts.get(tp)
            if part is not None:
                part.assigned = True
            name = self._by_topic.get(tp.topic)
            sub = None if name is None else self._subs.get(name)
            if consumer is not None and sub is not None and sub.paused:
                consumer.pause(tp)


    async def position(self, assigned: Collection[TopicPartition]) -> None:
        """Start each assigned partition at its committed offset, read for all in one request.

        Left to itself aiokafka asks for one partition's committed offset at a time, each
        request walking every assigned partition: with 1,000 Triggers (4,000 partitions) the
        first deliveries waited half a minute. A partition with no commit starts at 0 (Kafka's
        answer "out of range" then moves it to the earliest offset kept)."""
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        try:
            committed = await self._topics.committed(self._names.dispatchers, assigned)
        except StoreUnavailable as exc:
            log.info("committed offsets not read at assignment (fetched per partition): %s", exc)
            return
        # A rebalance may have begun during the read: seek only what is still assigned.
        for tp in set(assigned) & consumer.assignment():
            consumer.seek(tp, committed.get(tp, 0))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, claims: Claims) -> None:
        self._claims = claims

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._claims.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._claims.assigned(assigned)
        await self._claims.position(assigned)
