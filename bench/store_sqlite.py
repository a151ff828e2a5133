"""SQLite store micro-benchmark: ``python -m bench.store_sqlite [--seconds 3] [--synchronous full]``.

Measures, on a fresh database in a temporary directory:

* **append**: single-event appends (1 KiB data) from 64 concurrent tasks for ``--seconds``;
  reports appends/s and events per commit (group commit at work);
* **route + pending + finish**: with ``--backlog`` events already appended, one router task
  (``read`` after the cursor, ``route`` each event to one subscription) and one worker task
  (``pending``, ``finish``) move every event through; reports events/s until all are finished.

Prints results; writes nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Literal

from broker.event import Event
from broker.store.sqlite import SqliteStore

LOG = "bench/broker"
SUBSCRIPTION = "bench/trigger"
DATA = b"x" * 1024
BATCH = 256


def make_event(n: int) -> Event:
    return Event({"specversion": "1.0", "id": str(n), "source": "/bench", "type": "bench.event"}, DATA)


async def appends(store: SqliteStore, seconds: float, tasks: int) -> tuple[float, float, int]:
    """(appends/s, events per commit, events) for ``tasks`` concurrent single-event appenders."""
    end = time.perf_counter() + seconds
    counts = [0] * tasks

    async def appender(t: int) -> None:
        while time.perf_counter() < end:
            await store.append(LOG, [make_event(counts[t])])
            counts[t] += 1

    commits, started = store.commits, time.perf_counter()
    await asyncio.gather(*(appender(t) for t in range(tasks)))
    elapsed, total = time.perf_counter() - started, sum(counts)
    return total / elapsed, total / max(1, store.commits - commits), total


async def pipeline(store: SqliteStore, backlog: int) -> float:
    """Events/s routed, read back as pending and finished, for ``backlog`` stored events."""
    for start in range(0, backlog, BATCH):
        await store.append(LOG, [make_event(n) for n in range(start, min(backlog, start + BATCH))])
    last = (await store.stats()).events + await store.cursor(LOG)
    finished = 0

    async def router() -> None:
        cursor = await store.cursor(LOG)
        while cursor < last:
            entries = await store.read(LOG, cursor, BATCH)
            cursor = entries[-1].seq
            await store.route(LOG, cursor, [(e.seq, SUBSCRIPTION) for e in entries])

    async def worker() -> None:
        nonlocal finished
        while finished < backlog:
            batch = await store.claim(SUBSCRIPTION, BATCH)
            if not batch:
                await asyncio.sleep(0.0005)  # the store offers no wait on pending deliveries
                continue
            await store.finish(SUBSCRIPTION, [d.seq for d in batch])
            finished += len(batch)

    started = time.perf_counter()
    await asyncio.gather(router(), worker())
    return backlog / (time.perf_counter() - started)


async def run(seconds: float, backlog: int, synchronous: Literal["full", "normal"]) -> None:
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
        store = SqliteStore(path=Path(tmp) / "weir.db", synchronous=synchronous)
        await store.open()
        try:
            rate, per_commit, appended = await appends(store, seconds, tasks=64)
            print(f"append   synchronous={synchronous}: {rate:,.0f} appends/s "
                  f"(64 tasks, 1 event each, {per_commit:.1f} events per commit)")
            # A fresh log's seqs run 1..appended: route them all away before the next phase.
            await store.route(LOG, appended, [])
            rate = await pipeline(store, backlog)
            print(f"pipeline synchronous={synchronous}: {rate:,.0f} events/s "
                  f"(route + pending + finish, batches of {BATCH}, {backlog:,} events)")
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the append phase")
    parser.add_argument("--backlog", type=int, default=20_000, help="events through the pipeline phase")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.backlog, args.synchronous))


if __name__ == "__main__":
    main()
