"""Micro-benchmark timing shared by the in-process benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], *, budget: float = 0.2, repeats: int = 5) -> float:
    """Best-of-``repeats`` µs per call, each repeat running for about ``budget`` seconds.

    The best repeat is the one least disturbed by other work on a shared machine.
    """
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start > budget / 10:
            break
        calls *= 2
    calls = max(1, int(calls * budget / 10 / (time.perf_counter() - start)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6
