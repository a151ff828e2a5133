"""Paced commits (:mod:`broker.store.kafka_pace`): how many commits a burst of calls makes."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.store.kafka_pace import Pacer


class Commits:
    """A commit that counts its runs, can be held open, and can fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = 0

    async def __call__(self) -> None:
        self.runs += 1
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("refused")


async def until(check: object, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize(("calls", "interval", "runs"),
                         [(1, 0.0, 1), (50, 0.0, 50), (1, 0.02, 1), (50, 0.02, 1)])
async def test_a_burst_of_calls(calls: int, interval: float, runs: int) -> None:
    commits = Commits()
    pacer = Pacer(interval, commits, "test")
    for _ in range(calls):
        await pacer.commit()
    await until(lambda: commits.runs >= runs)
    await asyncio.sleep(3 * interval)  # a further commit would have run by now
    assert commits.runs == runs


async def test_calls_during_a_running_commit_get_one_more() -> None:
    # The running commit may have read what was due before they called.
    commits = Commits()
    pacer = Pacer(0.01, commits, "test")
    commits.gate.clear()
    await pacer.commit()
    await until(lambda: commits.runs == 1)
    for _ in range(10):
        await pacer.commit()
    commits.gate.set()
    await until(lambda: commits.runs == 2)
    await asyncio.sleep(0.05)
    assert commits.runs == 2


async def test_the_next_commit_waits_out_the_interval() -> None:
    commits = Commits()
    pacer = Pacer(0.2, commits, "test")
    await pacer.commit()
    await until(lambda: commits.runs == 1)
    started = time.monotonic()
    await pacer.commit()
    await until(lambda: commits.runs == 2)
    assert time.monotonic() - started >= 0.15


async def test_a_failed_commit_is_tried_again() -> None:
    commits = Commits()
    commits.failures = 2
    pacer = Pacer(0.01, commits, "test")
    await pacer.commit()
    await until(lambda: commits.runs == 3)
    await asyncio.sleep(0.05)
    assert commits.runs == 3 and commits.failures == 0


async def test_interval_zero_commits_inline_and_raises() -> None:
    commits = Commits()
    commits.failures = 1
    pacer = Pacer(0.0, commits, "test")
    with pytest.raises(ConnectionError):
        await pacer.commit()
    await pacer.commit()
    assert commits.runs == 2


async def test_cancel_drops_the_commit_asked_for() -> None:
    commits = Commits()
    pacer = Pacer(0.05, commits, "test")
    await pacer.commit()
    await until(lambda: commits.runs == 1)
    await pacer.commit()  # waits out the interval
    pacer.cancel()
    await asyncio.sleep(0.15)
    assert commits.runs == 1
