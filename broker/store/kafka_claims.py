"""Claims of the Kafka store: the consumer group ``<prefix>-dispatchers``.

One group member per store handle subscribes to the delivery topic of every subscription the
handle has claimed for (a topic joins on its first :meth:`Claims.claim`). The member only holds
partitions and commits; a group-less reader fetches the owned partitions that are not idle
(:mod:`broker.store.kafka_fetch`, :mod:`broker.store.kafka_idle`), each from its committed
offset, read for all of an assignment in one request. A background task
fetches records into a per-subscription buffer (:mod:`broker.store.kafka_buffer`);
:meth:`~Claims.claim` holds and returns buffered deliveries. A subscription with ``buffer``
deliveries waiting has its partitions paused until half drained, so a stuck subscription never
stops another's fetching.

* finish / dead-letter: the delivery is done, and its record's offset once all of the
  record's deliveries are; per partition the offset after the longest run of done records is
  committed: within ``commit_interval`` seconds (:mod:`broker.store.kafka_pace`; with 0, at
  once and awaited), and at a clean close and a revocation.
* release: the delivery waits again, in front of its buffer.
* Exclusivity: a partition holding a delivery this handle claimed (or finished and could not
  commit yet) is pinned to this handle by the group's assignor
  (:mod:`broker.store.kafka_assign`), so no other live handle is given it. On revocation the
  waiting deliveries of the partition are dropped (whoever owns it next fetches them again from
  the committed offset). This handle's claims end when it closes (leaves the group) or dies (its
  ``claim_lease`` session runs out); the next owner then fetches the unfinished ones again.
* Ordering: deliveries sharing a key share a partition and are buffered in offset order, so
  ``ordered`` needs nothing more here: nobody else holds an earlier delivery of a partition
  this handle owns.
* A record holds a bundle of deliveries, or a fan record those of many subscriptions
  (:mod:`broker.store.kafka_intake`: every member follows the fan topic too); its offset is
  finished (committable) once each of them is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from broker.errors import StoreUnavailable
from broker.store.base import Delivery
from broker.store.kafka_buffer import Buffered, SubscriptionBuffer
from broker.store.kafka_codec import FAN
from broker.store.kafka_config import KafkaStoreConfig, Names
from broker.store.kafka_fetch import DeliveryReader
from broker.store.kafka_handback import hand_back
from broker.store.kafka_intake import Intake
from broker.store.kafka_member import DispatcherMember
from broker.store.kafka_offsets import Offsets
from broker.store.kafka_pace import Pacer
from broker.store.kafka_topics import Topics

log = logging.getLogger(__name__)

POLL_MS = 500
FETCH_RECORDS = 500
MOVE_EVERY = 0.5
"""Seconds between looks for fan deliveries to move out (:mod:`broker.store.kafka_intake`)."""


class Claims:
    """This handle's claims; see the module docstring."""

    def __init__(
        self, config: KafkaStoreConfig, names: Names, topics: Topics, producer: AIOKafkaProducer
    ) -> None:
        self._config = config
        self._names = names
        self._topics = topics
        self._member = DispatcherMember(config, names.dispatchers, self._assignor_state, self)
        self._fetcher: asyncio.Task[None] | None = None
        self._subs: dict[str, SubscriptionBuffer] = {}
        self._by_topic: dict[str, str] = {}
        self._offsets = Offsets(config.timeout)
        self._pacer = Pacer(config.commit_interval, self._commit, "finished deliveries")
        self._owned: set[TopicPartition] = set()
        self._last: set[TopicPartition] = set()
        """The latest assignment, still known during a rebalance (for the assignor)."""
        self._watchers: list[Callable[[Collection[str]], None]] = []
        self._unplaced: set[TopicPartition] = set()
        """Owned partitions whose committed offset could not be read yet (not fetched)."""
        self._setup = asyncio.Lock()
        self._joining: set[str] = set()
        """Subscriptions waiting to join the member's subscription."""
        self._placing = asyncio.Lock()
        self._reader = DeliveryReader(config, self._throttled)
        self._intake = Intake(config, names, topics, self._offsets, self._subs, producer)
        self._moved_at = 0.0

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        self._watchers.append(notify)

    async def claim(self, subscription: str, limit: int) -> list[Delivery]:
        sub = self._subs.get(subscription)
        if sub is None or not sub.joined:
            sub = await self._subscribe(subscription)
        self._intake.claimed(subscription)
        taken = sub.take(limit, self._waiting)
        for item in taken:
            self._offsets.hold(item.tp, item.offset)
        self._throttle(subscription)
        if not taken:
            # Nothing buffered: let the fetch task (and the group's join) run before the caller
            # asks again, even if it asks in a loop.
            await asyncio.sleep(0)
        return [item.delivery for item in taken]

    def wake(self, tp: TopicPartition) -> None:
        """This handle wrote a delivery to ``tp``: fetch it now if it was idle."""
        if tp in self._owned:
            self._reader.wake(tp)

    def release(self, subscription: str, seqs: Sequence[int]) -> None:
        sub = self._subs.get(subscription)
        if sub is None:
            return
        back: list[Buffered] = []
        for seq in seqs:
            item = sub.held(seq)
            if item is None:
                continue
            if self._offsets.release(item.tp, item.offset):
                back.append(item)
            else:
                sub.forget(seq)  # fetched again once the partition is back
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
            self._offsets.finish_one(item.tp, item.offset, item.key)
        await self._pacer.commit()

    async def _commit(self) -> None:
        """Commit the finished offsets now, as this handle's group member."""
        await self._offsets.commit(self._member.consumer)

    async def forget(self, subscription: str) -> None:
        """Stop fetching the subscription and drop its buffer and claims (the store then
        deletes its topic)."""
        topic = self._names.delivery(subscription)
        self._joining.discard(subscription)
        sub = self._subs.pop(subscription, None)
        self._intake.forgot(subscription, sub)
        if sub is None or not sub.joined:
            return
        del self._by_topic[topic]
        self._reader.dropped(topic)
        self._offsets.drop(topic)
        if self._member.consumer is not None:
            await self._member.follow(self._by_topic)

    def progress(self) -> dict[TopicPartition, tuple[int, int, int]]:
        """Per owned partition: the offset below which all is finished, how many records
        above it are finished too (not yet committable), and the end seen by the last fetch."""
        found: dict[TopicPartition, tuple[int, int, int]] = {}
        for tp in self._owned:
            found[tp] = (*self._offsets.progress(tp), self._reader.high(tp))
        return found

    async def stop(self, producer: AIOKafkaProducer | None = None) -> None:
        """Commit what is finished and leave the group: unfinished claims go to other handles.
        With ``producer``, partly finished records are handed back first
        (:mod:`broker.store.kafka_handback`)."""
        await self._shut(leave=True, producer=producer)

    async def abandon(self) -> None:
        """Close without committing or leaving the group, as if the process died."""
        await self._shut(leave=False)

    async def _shut(self, *, leave: bool, producer: AIOKafkaProducer | None = None) -> None:
        self._pacer.cancel()  # a clean close commits below, a crash must not
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)
        await self._intake.stop(finish=leave)
        if leave and producer is not None:
            await hand_back(self._offsets, self._subs, producer, timeout=self._config.timeout)
        if leave:
            try:
                await self._commit()
            except StoreUnavailable as exc:
                log.warning("finished deliveries not committed at close (delivered again): %s", exc)
        self._subs.clear()
        self._by_topic.clear()
        self._offsets.clear()
        await self._reader.stop()
        await self._member.stop(leave=leave)

    async def _subscribe(self, subscription: str) -> SubscriptionBuffer:
        # Subscriptions asking meanwhile join together: at start every worker claims at once,
        # and a topic creation and a subscription change each for 1,000 Triggers took seconds
        # (every change during a join costs another join).
        self._joining.add(subscription)
        async with self._setup:
            sub = self._subs.get(subscription)
            if sub is not None and sub.joined:
                return sub
            while names := sorted(n for n in self._joining if not ((b := self._subs.get(n)) and b.joined)):
                partitions = self._config.partitions
                wanted = {self._names.delivery(n): partitions for n in names}
                wanted[self._names.fan] = partitions  # every member follows the fan records
                await self._topics.ensure_all(wanted)
                self._by_topic[self._names.fan] = FAN
                for name in names:
                    buffer = self._subs.setdefault(name, SubscriptionBuffer())
                    buffer.joined = True
                    self._by_topic[self._names.delivery(name)] = name
                self._joining.difference_update(names)
            member = await self._member.follow(self._by_topic)
            if self._fetcher is None:
                await self._reader.start()
                self._fetcher = asyncio.create_task(self._fetch(member), name="weir-kafka-claims")
            return self._subs[subscription]

    def _assignor_state(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        return self._offsets.pinned(), set(self._last)

    def _waiting(self, item: Buffered) -> bool:
        return self._offsets.waiting(item.tp, item.offset)

    async def _fetch(self, member: AIOKafkaConsumer) -> None:
        while True:
            try:
                if self._unplaced and not self._placing.locked():
                    await self.position(set(self._unplaced))
                batch = await self._reader.fetch(POLL_MS, FETCH_RECORDS)
                woke: set[str] = set()
                now = asyncio.get_running_loop().time()
                for tp, records in batch.items():
                    name = self._by_topic.get(tp.topic)
                    if name is not None and tp in self._owned:
                        for record in records:
                            woke |= self._intake.take(name, tp, record, now)
                if now - self._moved_at >= MOVE_EVERY:
                    self._moved_at = now
                    self._intake.stale(now, self._joining)
                self._intake.move_soon(self.wake)
                for name in woke:
                    self._throttle(name)
                if woke:
                    for notify in self._watchers:
                        notify(woke)
                if self._offsets.dirty:
                    # Records skipped or found twice by the fetch: their offsets wait for the
                    # paced commit too, or every fetch would make a commit of its own.
                    if self._pacer.paced:
                        self._pacer.soon()
                    else:
                        self._offsets.commit_soon(member)
                await self._reader.check(member)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching deliveries: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(POLL_MS / 1000)

    def _throttle(self, name: str) -> None:
        sub = self._subs.get(name)
        if sub is None:
            return
        # Called at every claim: the owned partitions are looked up only on a change.
        if not sub.paused and len(sub) >= self._config.buffer:
            self._reader.pause(self._owned_of(name))
            sub.paused = True
        elif sub.paused and len(sub) <= self._config.buffer // 2:
            sub.paused = False
            self._reader.resume(self._owned_of(name))

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
        self._unplaced.difference_update(revoked)
        self._reader.disown(revoked)
        for tp in revoked:
            dropping = self._offsets.revoke(tp)
            subs = list(self._subs.values()) if dropping == FAN else [self._subs.get(dropping or "")]
            for sub in subs:
                if sub is not None:
                    sub.drop_waiting(tp)

    def assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._owned = set(assigned)
        self._last = set(assigned)
        self._unplaced = set(assigned)
        self._offsets.assign(set(assigned))

    async def position(self, assigned: Collection[TopicPartition]) -> None:
        """Have the reader fetch each assigned partition from its committed offset, read for
        all in one request (left to itself aiokafka asks one partition at a time: with 1,000
        Triggers the first deliveries waited half a minute). A partition with no commit starts
        at 0 (Kafka's answer "out of range" then moves it to the earliest offset kept). When the
        read fails the partitions wait, and the fetch task tries again."""
        if not assigned:
            return
        async with self._placing:
            try:
                committed = await self._topics.committed(self._names.dispatchers, assigned)
            except StoreUnavailable as exc:
                log.info("committed offsets not read at assignment (tried again): %s", exc)
                await asyncio.sleep(POLL_MS / 1000)
                return
        # A rebalance may have begun during the read: place only what is still unplaced.
        placed = set(assigned) & self._unplaced
        self._unplaced -= placed
        self._reader.own({tp: committed.get(tp, 0) for tp in placed})

