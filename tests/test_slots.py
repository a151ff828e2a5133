"""The sender's gate: at most ``limit`` holders, the rest served in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from broker.slots import Slots


async def hold(slots: Slots, name: str, order: list[str], release: asyncio.Event) -> None:
    async with slots:
        order.append(name)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_at_most_limit_hold_and_the_rest_follow_in_arrival_order(limit: int) -> None:
    slots, go = Slots(limit), asyncio.Event()
    order: list[str] = []
    names = [f"w{i}" for i in range(limit + 4)]
    tasks = [asyncio.create_task(hold(slots, n, order, go)) for n in names]
    await settle()
    assert order == names[:limit]
    assert (slots.free, slots.waiting) == (0, 4)
    go.set()
    await asyncio.gather(*tasks)
    assert order == names
    assert (slots.free, slots.waiting) == (limit, 0)


async def test_a_waiter_cancelled_before_its_turn_is_skipped() -> None:
    slots, go = Slots(1), asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(hold(slots, "first", order, go))
    gone = asyncio.create_task(hold(slots, "gone", order, go))
    last = asyncio.create_task(hold(slots, "last", order, go))
    await settle()
    gone.cancel()
    go.set()
    await asyncio.gather(first, last)
    assert gone.cancelled()
    assert order == ["first", "last"]
    assert slots.free == 1


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    handed = asyncio.create_task(slots.acquire())
    after = asyncio.create_task(slots.acquire())
    await settle()
    slots.release()  # the slot goes to `handed`, which has not resumed yet
    handed.cancel()
    await asyncio.wait_for(after, 1)
    assert handed.cancelled()
    assert slots.free == 0
    slots.release()
    assert slots.free == 1


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
