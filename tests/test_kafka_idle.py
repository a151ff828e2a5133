"""Which delivery partitions of a Kafka store handle go idle and wake (no server needed: the
bookkeeping is plain data; the fetching around it is tested against tansu in test_store_kafka)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from broker.store import kafka_idle
from broker.store.kafka_idle import IdlePartitions

TP = TopicPartition("weir.dl.ns.t", 0)


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_idle, "IDLE_AFTER", 0.0)


@pytest.mark.parametrize(
    ("high", "position", "held", "idle"),
    [
        (10, 10, False, True),  # fetched up to its watermark
        (10, 12, False, True),  # past it (the watermark was read before the last fetch)
        (10, 9, False, False),  # behind: records nobody would fetch once idle
        (None, 0, False, False),  # no fetch answered yet
        (10, 10, True, False),  # paused for another reason
    ],
)
def test_a_partition_goes_idle_only_when_caught_up(
    high: int | None, position: int, held: bool, idle: bool
) -> None:
    idle_parts = IdlePartitions(lambda tp: held)
    idle_parts.assigned([TP])
    went = idle_parts.settle(lambda tp: high, lambda tp: position)
    assert (went == [TP]) is idle
    assert (TP in idle_parts) is idle


@pytest.mark.parametrize(
    ("end", "held", "woke"),
    [
        (11, False, True),  # a record arrived after the mark
        (10, False, False),
        (11, True, False),  # its subscription has too much waiting: it stays paused meanwhile
    ],
)
def test_an_idle_partition_wakes_when_its_end_moves(end: int, held: bool, woke: bool) -> None:
    holding = {"held": False}
    idle_parts = IdlePartitions(lambda tp: holding["held"])
    idle_parts.assigned([TP])
    assert idle_parts.settle(lambda tp: 10, lambda tp: 10) == [TP]
    holding["held"] = held
    assert (idle_parts.moved({TP: end}) == [TP]) is woke
    assert (TP in idle_parts) is not woke


def test_a_route_wakes_an_idle_partition_once() -> None:
    idle_parts = IdlePartitions(lambda tp: False)
    idle_parts.assigned([TP])
    idle_parts.settle(lambda tp: 3, lambda tp: 3)
    assert idle_parts.wake(TP) is True
    assert idle_parts.wake(TP) is False  # already active
    idle_parts.revoked([TP])
    assert idle_parts.settle(lambda tp: 3, lambda tp: 3) == []  # no longer owned


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_a_partition_that_keeps_waking_waits_longer_to_go_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(kafka_idle, "IDLE_AFTER", 2.0)
    monkeypatch.setattr(kafka_idle, "time", clock)
    idle_parts = IdlePartitions(lambda tp: False)
    idle_parts.assigned([TP])
    waits = []
    for _ in range(8):
        quiet = 0.0
        while not idle_parts.settle(lambda tp: 1, lambda tp: 1):
            clock.now += 0.5
            quiet += 0.5
        waits.append(quiet)
        assert idle_parts.wake(TP)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    idle_parts.revoked([TP])
    idle_parts.assigned([TP])  # owned again: starts over
    clock.now += 2.0
    assert idle_parts.settle(lambda tp: 1, lambda tp: 1) == [TP]
