"""Leases and cursors of the Kafka store: the consumer group ``<prefix>-routers``.

* **Lease**: a handle's member of the group subscribes to the log topics it was asked about
  (a log joins the subscription on its first :meth:`RouterGroup.lease`); the member the group
  assigns a log's only partition holds its lease. :meth:`~RouterGroup.lease` reads that local
  assignment only. Rebalances are eager (every member gives its partitions up before new ones
  are handed out), so two live members never both hold one; a closing handle leaves the group
  (the lease moves after one join), a dead one is dropped after ``lease_ttl``.
* **Cursor**: the group's committed offset for the log partition. Its value is the routed
  ``seq`` itself, not a Kafka offset, because a route may end inside a multi-event record and
  tansu does not keep commit metadata (where the exact seq would otherwise go). Any handle
  reads it. A lease holder commits as the group member, so a holder that lost the lease is
  refused (generation fencing). The holder's cursor moves in memory at each route and is
  committed within ``commit_interval`` seconds (:mod:`broker.store.kafka_pace`), before the
  lease moves, and at a clean close; after a crash the next holder routes again what the last
  commit did not cover (its deliveries come twice). A handle routing without the lease
  (tests, a single process) commits as a group-less consumer at once, which Kafka accepts only
  while nobody holds that log's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from broker.errors import StoreUnavailable
from broker.store.kafka_assign import StickyAssignor
from broker.store.kafka_config import (
    KafkaStoreConfig,
    Names,
    client_options,
    group_options,
    kafka_errors,
    keep_polling,
    stop_quietly,
)
from broker.store.kafka_pace import Pacer
from broker.store.kafka_topics import Topics

log = logging.getLogger(__name__)

class RouterGroup:
    """This handle's leases and every handle's cursors; see the module docstring."""

    def __init__(self, config: KafkaStoreConfig, names: Names, topics: Topics) -> None:
        self._config = config
        self._names = names
        self._topics = topics
        self._member: AIOKafkaConsumer | None = None
        self._keeper: AIOKafkaConsumer | None = None
        self._poller: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        self._owned: set[TopicPartition] = set()
        self._last: set[TopicPartition] = set()
        """The latest assignment, still known during a rebalance (for the assignor)."""
        self._cursors: dict[TopicPartition, int] = {}
        """Cursors this handle moved while it held the lease."""
        self._unsent: dict[TopicPartition, int] = {}
        """Of those, the ones not committed yet (:mod:`broker.store.kafka_pace`)."""
        self._pacer = Pacer(config.commit_interval, self._commit_unsent, "routed cursors")
        self._setup = asyncio.Lock()

    async def lease(self, log_name: str) -> bool:
        tp = TopicPartition(self._names.log(log_name), 0)
        if tp.topic not in self._subscribed:
            await self._subscribe(tp.topic)
        return tp in self._owned

    async def cursor(self, log_name: str) -> int:
        tp = TopicPartition(self._names.log(log_name), 0)
        if tp in self._owned and tp in self._cursors:
            return self._cursors[tp]
        found = await self._topics.committed(self._names.routers, [tp])
        return found.get(tp, 0)

    async def cursors(self, topics: Collection[str]) -> dict[str, int]:
        """The cursor of each log topic (0 when nothing was routed)."""
        found = await self._topics.committed(self._names.routers, [TopicPartition(t, 0) for t in topics])
        return {tp.topic: seq for tp, seq in found.items()}

    async def commit(self, log_name: str, seq: int) -> None:
        """Record that ``log_name`` is routed up to ``seq`` (StoreUnavailable when refused).
        The lease holder's cursor moves at once here and is committed within
        ``commit_interval`` seconds, or before its lease moves."""
        tp = TopicPartition(self._names.log(log_name), 0)
        if self._member is not None and tp in self._owned:
            self._cursors[tp] = self._unsent[tp] = seq
            await self._pacer.commit()
            return
        async with kafka_errors(f"moving the cursor of {log_name}", self._config.timeout):
            keeper = await self._keeper_for(tp)
            await keeper.commit({tp: seq})

    async def flush(self, tps: Collection[TopicPartition] | None = None) -> None:
        """Commit the cursors moved and not committed yet (of ``tps``, or all), now; a failure
        is logged (the next lease holder routes those events again)."""
        try:
            await self._commit_unsent(tps)
        except StoreUnavailable as exc:
            log.warning("routed cursors not committed before the lease moved (routed again): %s", exc)

    async def _commit_unsent(self, tps: Collection[TopicPartition] | None = None) -> None:
        member = self._member
        due = {tp: seq for tp, seq in self._unsent.items()
               if (tps is None or tp in tps) and tp in self._owned}
        if member is None or not due:
            return
        async with kafka_errors("moving routed cursors", self._config.timeout):
            await member.commit(due)
        for tp, seq in due.items():
            if self._unsent.get(tp) == seq:
                del self._unsent[tp]

    async def stop(self) -> None:
        """Leave the group (the leases move at once) and close."""
        await self._shut(leave=True)

    async def abandon(self) -> None:
        """Close without leaving the group, as if the process died (for failure tests)."""
        await self._shut(leave=False)

    async def _shut(self, *, leave: bool) -> None:
        self._pacer.cancel()
        if leave:
            await self.flush()
        self._unsent.clear()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        member, keeper = self._member, self._keeper
        self._member = self._keeper = None
        self._owned.clear()
        self._subscribed.clear()
        timeout = self._config.timeout
        if member is not None:
            # aiokafka sends LeaveGroup on stop only for a generation above 0; tansu numbers a
            # group's first generation 0.
            coordinator = member._coordinator
            coordinator.generation = (coordinator.generation or 1) if leave else -1
            await stop_quietly("the router group member", member.stop(), timeout)
        if keeper is not None:
            await stop_quietly("the cursor keeper", keeper.stop(), timeout)

    async def _subscribe(self, topic: str) -> None:
        async with self._setup:
            if topic in self._subscribed:
                return
            await self._topics.ensure(topic, 1)
            if self._member is None:
                member = AIOKafkaConsumer(
                    **group_options(self._config, session=self._config.lease_ttl),
                    group_id=self._names.routers,
                    partition_assignment_strategy=(StickyAssignor(lambda: ((), set(self._last))),),
                )
                async with kafka_errors("joining the router group", self._config.timeout):
                    await member.start()
                self._member = member
            self._subscribed.add(topic)
            # Returns at once: the join runs in the background (about a second with tansu).
            self._member.subscribe(sorted(self._subscribed), listener=_Listener(self, self._member))
            if self._poller is None:
                self._poller = asyncio.create_task(keep_polling(self._member, "router group member"),
                                                   name="weir-kafka-router-poll")

    async def _keeper_for(self, tp: TopicPartition) -> AIOKafkaConsumer:
        if self._keeper is None:
            keeper = AIOKafkaConsumer(**client_options(self._config), group_id=self._names.routers,
                                      enable_auto_commit=False)
            await keeper.start()
            self._keeper = keeper
        assigned = self._keeper.assignment()
        if tp not in assigned:
            self._keeper.assign([*assigned, tp])
            # Commits only: never fetch.
            self._keeper.pause(*self._keeper.assignment())
        return self._keeper

    async def revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.flush(revoked)
        self._owned.difference_update(revoked)
        for tp in revoked:
            self._cursors.pop(tp, None)
            self._unsent.pop(tp, None)

    def assigned(self, member: AIOKafkaConsumer, assigned: Collection[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            member.pause(*assigned)  # the member never reads: the log reader does
        self._owned = set(assigned)
        self._last = set(assigned)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, group: RouterGroup, member: AIOKafkaConsumer) -> None:
        self._group = group
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._group.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._group.assigned(self._member, assigned)
