"""The partition assignor of the Kafka store's two consumer groups.

Each member sends, with its JoinGroup metadata, the partitions it **pins** and the partitions it
**owns**. The group leader gives every pinned partition back to the member pinning it (the first
by member id, should two pin one), then spreads the rest of each topic so members' shares of
it differ by at most one (ties go to the member with fewer partitions in all), keeping a
partition with its current owner when that owner is among the least loaded. Balancing per
topic keeps each subscription's partitions (and the fan records') spread over the members;
balancing the total could give one member all of a topic.

The dispatcher group pins the partitions holding deliveries a handle has claimed and not yet
finished: as long as that handle lives, no other member is given the partition, so no live
handle ever claims a delivery another holds (Kafka rebalances are eager: every member gives up
its partitions before a new assignment, then gets its pinned ones back). The router group pins
nothing: a lease may move whenever the group changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping

import orjson
from aiokafka import TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

State = Callable[[], tuple[Collection[TopicPartition], Collection[TopicPartition]]]
"""Returns ``(pinned, owned)`` partitions of this member at the time it joins."""


class StickyAssignor:
    """An aiokafka assignment strategy (duck-typed like its ``AbstractPartitionAssignor``)."""

    name = "weir-sticky"
    version = 0

    def __init__(self, state: State) -> None:
        self._state = state

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        pinned, owned = self._state()
        user_data = orjson.dumps({"pinned": [[tp.topic, tp.partition] for tp in pinned],
                                  "owned": [[tp.topic, tp.partition] for tp in owned]})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        subscribed = {member: set(meta.subscription) for member, meta in members.items()}
        claims = {member: _claims(meta.user_data) for member, meta in members.items()}
        partitions = sorted(
            TopicPartition(topic, partition)
            for topic in set().union(*subscribed.values())
            for partition in (cluster.partitions_for_topic(topic) or ())
        )
        given: dict[str, list[TopicPartition]] = {member: [] for member in members}
        rest: list[TopicPartition] = []
        for tp in partitions:
            pinning = sorted(m for m in members if tp in claims[m][0] and tp.topic in subscribed[m])
            if pinning:
                given[pinning[0]].append(tp)
            else:
                rest.append(tp)
        per_topic: Counter[tuple[str, str]] = Counter((m, tp.topic) for m, tps in given.items() for tp in tps)

        def load(member: str, topic: str) -> tuple[int, int]:
            return per_topic[member, topic], len(given[member])

        for tp in rest:
            candidates = sorted(m for m in members if tp.topic in subscribed[m])
            least = load(min(candidates, key=lambda m: load(m, tp.topic)), tp.topic)
            owners = [m for m in candidates if tp in claims[m][1] and load(m, tp.topic) <= least]
            chosen = owners[0] if owners else min(candidates, key=lambda m: load(m, tp.topic))
            given[chosen].append(tp)
            per_topic[chosen, tp.topic] += 1
        return {member: _assignment(self.version, tps) for member, tps in given.items()}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Nothing to keep: the state is read afresh at every join."""


def _claims(user_data: bytes | None) -> tuple[set[TopicPartition], set[TopicPartition]]:
    """A member's ``(pinned, owned)``; empty for a member that sent none (or garbage)."""
    try:
        doc = orjson.loads(user_data or b"{}")
        return ({TopicPartition(t, p) for t, p in doc.get("pinned", ())},
                {TopicPartition(t, p) for t, p in doc.get("owned", ())})
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return set(), set()


def _assignment(version: int, tps: list[TopicPartition]) -> ConsumerProtocolMemberAssignment:
    topics: dict[str, list[int]] = {}
    for tp in tps:
        topics.setdefault(tp.topic, []).append(tp.partition)
    return ConsumerProtocolMemberAssignment(version, sorted(topics.items()), b"")
