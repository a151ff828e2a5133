"""A Kafka store handle's member of the dispatcher group ``<prefix>-dispatchers``.

The member subscribes to the delivery topics of the subscriptions the handle claims for, holds
the partitions the group assigns it, and commits for them; it never fetches (every partition
stays paused at a position, so aiokafka neither fetches nor asks for committed offsets; the
reader of :mod:`broker.store.kafka_fetch` fetches). Rebalances are passed on to the claims
(:class:`Rebalanced`), and its assignor pins what the claims say (:mod:`broker.store.kafka_assign`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from broker.store.kafka_assign import State, StickyAssignor
from broker.store.kafka_config import (
    KafkaStoreConfig,
    group_options,
    kafka_errors,
    keep_polling,
    stop_quietly,
)


class Rebalanced(Protocol):
    """What hears of the member's rebalances."""

    async def revoked(self, revoked: Collection[TopicPartition]) -> None: ...

    def assigned(self, assigned: Collection[TopicPartition]) -> None: ...

    async def position(self, assigned: Collection[TopicPartition]) -> None: ...


class DispatcherMember:
    """See the module docstring; ``state`` gives the assignor the pinned and owned partitions."""

    def __init__(self, config: KafkaStoreConfig, group: str, state: State, claims: Rebalanced) -> None:
        self._config = config
        self._group = group
        self._state = state
        self._claims = claims
        self.consumer: AIOKafkaConsumer | None = None
        self._poller: asyncio.Task[None] | None = None

    async def follow(self, topics: Collection[str]) -> AIOKafkaConsumer:
        """Join the group if not yet a member, and subscribe to exactly ``topics``. Returns at
        once: the join runs in the background (about a second with tansu)."""
        consumer = self.consumer
        if consumer is None:
            consumer = AIOKafkaConsumer(
                **group_options(self._config, session=self._config.claim_lease),
                group_id=self._group,
                partition_assignment_strategy=(StickyAssignor(self._state),),
            )
            async with kafka_errors("joining the dispatcher group", self._config.timeout):
                await consumer.start()
            self.consumer = consumer
            self._poller = asyncio.create_task(keep_polling(consumer, "dispatcher group member"),
                                               name="weir-kafka-claims-member")
        if topics:
            consumer.subscribe(sorted(topics), listener=_Listener(self._claims, self._hold))
        else:
            consumer.unsubscribe()
        return consumer

    async def stop(self, *, leave: bool) -> None:
        """Leave the group (unfinished claims go to other members at once), or with ``leave``
        false stop as if the process died (they wait for ``claim_lease``)."""
        consumer, self.consumer = self.consumer, None
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        if consumer is not None:
            # aiokafka sends LeaveGroup on stop only for a generation above 0; tansu numbers a
            # group's first generation 0.
            coordinator = consumer._coordinator
            coordinator.generation = (coordinator.generation or 1) if leave else -1
            await stop_quietly("the dispatcher group member", consumer.stop(), self._config.timeout)

    def _hold(self, assigned: Collection[TopicPartition]) -> None:
        consumer = self.consumer
        if consumer is not None:
            for tp in assigned:
                consumer.seek(tp, 0)
            consumer.pause(*assigned)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, claims: Rebalanced, hold: Callable[[Collection[TopicPartition]], None]) -> None:
        self._claims = claims
        self._hold = hold

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._claims.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._hold(assigned)
        self._claims.assigned(assigned)
        await self._claims.position(assigned)
