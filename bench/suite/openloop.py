"""Open-loop load: binary-mode CloudEvents POSTed on a fixed schedule, never waiting for answers.

Event ``i`` of a run is due at ``start + i / rate``. The schedule does not wait for responses: each
send is its own task over a pool of keep-alive connections, so a slow server queues requests (and
their latency, measured by the sink from the scheduled time, grows) instead of slowing the load.
Each event has ``ce-id`` ``<run>-<i>`` and ``ce-benchsent`` = its scheduled send time.

``lag`` is how late the generator itself started each send; when its p99 is more than a
millisecond or two, the generator (not the server) limits the run.

``python -m bench.suite.openloop URL --rate R --seconds S [--size 1024] [--run NAME]`` prints the
:class:`LoadResult` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass

import aiohttp
import orjson

from bench.suite.recorder import percentile

EVENT_TYPE = "dev.weir.bench"
TICK = 0.001
"""Shortest sleep between sends, in seconds: events falling due within it go out together."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """One open-loop run."""

    url: str
    rate: float
    """Events per second."""
    seconds: float
    size: int = 1024
    """Bytes of JSON data per event."""
    run: str = ""
    """Prefix of every ``ce-id`` (default: a fresh random name)."""
    connections: int = 64
    event_type: str = EVENT_TYPE
    timeout: float = 30.0
    """Seconds one request may take before it counts as an error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    run: str
    sent: int
    accepted: int
    """Answers 202 (or another 2xx)."""
    rejected: int
    """Answers that were not 2xx."""
    errors: int
    """Connection errors and timeouts."""
    start: float
    """``time.time()`` the first event was due."""
    end: float
    """``time.time()`` the last event was due, plus one interval (``start + sent / rate``)."""
    lag_p99_ms: float
    lag_max_ms: float
    cpu_s: float
    """CPU seconds the generating process used during the run (its other work included)."""


def body_of(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 11)."""
    pad = max(size - len(b'{"pad":""}'), 1)
    return b'{"pad":"' + b"x" * pad + b'"}'


async def generate(
    spec: LoadSpec,
    *,
    session: aiohttp.ClientSession | None = None,
    on_start: Callable[[], None] | None = None,
    on_sent: Callable[[], None] | None = None,
) -> LoadResult:
    """Send ``rate * seconds`` events on schedule; return once every request has an outcome.

    ``on_start`` is called as the schedule starts and ``on_sent`` once its last event went out
    (before the last answers), so a caller can read the server's CPU over exactly the schedule.
    """
    run = spec.run or uuid.uuid4().hex[:10]
    body = body_of(spec.size)
    total = max(1, round(spec.rate * spec.seconds))
    counts = {"accepted": 0, "rejected": 0, "errors": 0}
    lags = array("d")
    own = session is None
    if session is None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=spec.connections),
            timeout=aiohttp.ClientTimeout(total=spec.timeout),
        )
    loop = asyncio.get_running_loop()
    assert session is not None

    async def send(i: int, due: float) -> None:
        lags.append(time.time() - due)
        headers = {
            "ce-specversion": "1.0",
            "ce-type": spec.event_type,
            "ce-source": "/bench/openloop",
            "ce-id": f"{run}-{i}",
            "ce-benchsent": repr(due),
            "content-type": "application/json",
        }
        try:
            async with session.post(spec.url, data=body, headers=headers) as response:
                await response.read()
                counts["accepted" if 200 <= response.status < 300 else "rejected"] += 1
        except (aiohttp.ClientError, TimeoutError):
            counts["errors"] += 1

    tasks: set[asyncio.Task[None]] = set()
    cpu0 = sum(os.times()[:2])
    mono0 = loop.time() + 0.01
    wall0 = time.time() + (mono0 - loop.time())
    if on_start is not None:
        on_start()
    sent = 0
    try:
        while True:
            due_now = min(total, int((loop.time() - mono0) * spec.rate) + 1)
            while sent < due_now:
                task = asyncio.create_task(send(sent, wall0 + sent / spec.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if sent >= total:
                break
            # Timers fire with about a millisecond of precision; asking for less only spins.
            await asyncio.sleep(max(TICK, mono0 + sent / spec.rate - loop.time()))
        if on_sent is not None:
            on_sent()
        if tasks:
            await asyncio.wait(tasks)
    finally:
        if own:
            await session.close()
    ordered = sorted(lags)
    return LoadResult(
        run=run,
        sent=sent,
        start=wall0,
        end=wall0 + sent / spec.rate,
        lag_p99_ms=percentile(ordered, 99) * 1e3,
        lag_max_ms=(ordered[-1] if ordered else 0.0) * 1e3,
        cpu_s=sum(os.times()[:2]) - cpu0,
        **counts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Open-loop CloudEvents load generator.")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--run", default="")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    spec = LoadSpec(
        url=args.url,
        rate=args.rate,
        seconds=args.seconds,
        size=args.size,
        run=args.run,
        connections=args.connections,
    )
    print(orjson.dumps(asdict(asyncio.run(generate(spec)))).decode())


if __name__ == "__main__":
    main()
