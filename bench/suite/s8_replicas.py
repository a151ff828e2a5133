"""S8: dispatcher replicas. One and two ``weir run --role dispatcher`` draining the same backlog.

For each replica count R (1, then 2), on a fresh store prefix:

1. *Fill*: Weir ``--role ingress`` (core 0), with one Broker and one Trigger matching every event,
   accepts N events (1 KB, closed loop over 64 connections from the suite on core 1) and stops.
   Nothing routes or delivers them yet: the backlog sits in the Broker's log.
2. *Drain*: R dispatchers start at once on that prefix, dispatcher 1 pinned to core 0 and
   dispatcher 2 to core 1. The Trigger's subscriber is :mod:`bench.suite.fastsink` (about 20 µs
   of CPU per request); the sink and the log server may run on either core for the drain (their
   affinity is widened to both, in both runs alike), so they take whatever CPU is idle.
3. The delivery rate is read at the sink over the *steady window*: from the arrival of the
   delivery at 10% of N to the one at 90%, which leaves out start-up (process start, joining,
   first fetches) and the tail; it starts later if a dispatcher was not yet busy by then (at
   least 0.3 of a core over the last 0.5 s: e.g. still joining its consumer group), as long as
   20% of N remain in it. The rate from first to last delivery is reported too. CPU of every
   dispatcher, the sink and the log server is sampled every 0.1 s and read over the window.

Reported: two replicas' rate over one replica's against 1.6x, each process's CPU (cores) in the
window, and whether the sink, the log server or the machine was the bottleneck.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp

from bench.suite.checks import Outcome, at_least, at_most, ratio
from bench.suite.context import Ctx
from bench.suite.machine import CoreTimes, busy_between, core_times
from bench.suite.openloop import EVENT_TYPE, body_of
from bench.suite.procs import LOAD_CPU, SUT_CPU, Proc, can_pin, free_port, running, usage
from bench.suite.render import Column, table
from bench.suite.targets import TriggerDoc, weir, weir_command, write_manifests

TITLE = "S8: dispatcher replicas"
SCALING_TARGET = 1.6
WINDOW = (0.1, 0.9)
"""The steady window, as fractions of the events: from the delivery at 10% to the one at 90%."""
ACTIVE = 0.3
"""CPU share over :data:`TRAILING` seconds from which a dispatcher counts as busy."""
TRAILING = 0.5
SHORTEST = 0.2
"""Least share of the events a window moved for busy dispatchers may keep."""
BUSY = 0.9
"""CPU share (of one core) above which a single-threaded process is called a bottleneck."""
STALL = 35.0
"""A drain ends when the sink saw nothing new for this many seconds: longer than the NATS
store's default claim lease (30 s), so a delivery whose claim was lost still arrives."""
CORES = (SUT_CPU, LOAD_CPU)
COLUMNS: tuple[Column, ...] = (
    ("replicas", "replicas", "d"),
    ("events", "events", ",d"),
    ("fill ev/s", "fill_rate", ",.0f"),
    ("deliveries/s (10–90%)", "rate", ",.0f"),
    ("deliveries/s (first–last)", "rate_first_last", ",.0f"),
    ("window s", "window_s", ".2f"),
    ("window from", "window_from", ""),
    ("start → first delivery s", "first_delivery_s", ".2f"),
    ("loss", "loss", ",d"),
    ("dup", "dup", ",d"),
    ("dispatcher 1 CPU", "cpu_dispatcher_1", ".2f"),
    ("dispatcher 2 CPU", "cpu_dispatcher_2", ".2f"),
    ("sink CPU", "cpu_sink", ".2f"),
    ("log server CPU", "cpu_log_server", ".2f"),
    ("core 0 busy", "sut_core_busy", "pct"),
    ("core 1 busy", "load_core_busy", "pct"),
    ("CPU µs/delivery (dispatchers, sink, log server)", "cpu_us_per_delivery", ",.0f"),
)


def _both_cores(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, CORES)), *cmd] if can_pin() else cmd


async def _fill(url: str, run: str, events: int) -> float:
    """POST events ``run-0`` … ``run-(events-1)`` over 64 connections; returns events/s."""
    body, todo = body_of(1024), iter(range(events))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def worker() -> None:
            for i in todo:
                headers = {"ce-specversion": "1.0", "ce-type": EVENT_TYPE, "ce-source": "/bench/s8",
                           "ce-id": f"{run}-{i}", "content-type": "application/json"}
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 202:
                        raise RuntimeError(f"ingress answered {response.status}: {await response.text()}")

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(64)))
        return events / (time.monotonic() - started)


async def _sink_stats(session: aiohttp.ClientSession, sink: str, run: str, arrivals: bool) -> dict[str, Any]:
    async with session.get(f"{sink}/_stats?run={run}&arrivals={int(arrivals)}") as response:
        found: dict[str, Any] = await response.json()
        return found


def _at(samples: list[tuple[float, float]], when: float) -> float:
    """Cumulative CPU seconds at ``when``, interpolated between readings."""
    before = max((s for s in samples if s[0] <= when), default=samples[0])
    after = min((s for s in samples if s[0] >= when), default=samples[-1])
    if after[0] == before[0]:
        return before[1]
    return before[1] + (after[1] - before[1]) * (when - before[0]) / (after[0] - before[0])


def busy_since(samples: list[tuple[float, float]]) -> float | None:
    """When a process first used :data:`ACTIVE` of a core over the trailing :data:`TRAILING` s."""
    for t, cpu in samples:
        earlier = [s for s in samples if s[0] <= t - TRAILING]
        if earlier and (cpu - earlier[-1][1]) / (t - earlier[-1][0]) >= ACTIVE:
            return t
    return None


def window(arrivals: list[float], events: int, busy: list[float | None]) -> tuple[int, int, str]:
    """Indexes of the steady window's first and last delivery in ``arrivals``, and why it starts
    where it does."""
    lo, hi = (max(0, min(len(arrivals) - 1, int(f * events))) for f in WINDOW)
    if None in busy or not busy:
        return lo, hi, "10% of the events (a dispatcher never got busy)" if busy else "10% of the events"
    since = max(t for t in busy if t is not None)
    later = bisect.bisect_left(arrivals, since)
    if later <= lo:
        return lo, hi, "10% of the events"
    if hi - later < SHORTEST * events:
        return lo, hi, f"10% of the events (every dispatcher was busy only after {later / events:.0%})"
    return later, hi, f"every dispatcher busy, {later / events:.0%} of the events delivered"


def _near(ticks: list[tuple[float, CoreTimes]], when: float) -> CoreTimes:
    return min(ticks, key=lambda t: abs(t[0] - when))[1]


async def _drain(
    ctx: Ctx, sink: str, run: str, events: int, watched: dict[str, int], procs: list[Proc]
) -> dict[str, Any]:
    """Sample CPU until the sink has every event (or stalls); the window's figures."""
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in watched}
    ticks: list[tuple[float, CoreTimes]] = []
    seen, changed = -1, time.monotonic()
    while True:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.stderr_tail()}")
        now = time.time()
        for name, pid in watched.items():
            cpu[name].append((now, usage(pid).cpu_s))
        ticks.append((now, core_times()))
        count = int((await _sink_stats(ctx.session, sink, run, False))["deliveries"])
        if count != seen:
            seen, changed = count, time.monotonic()
        if count >= events or time.monotonic() - changed > STALL:
            break
        await asyncio.sleep(0.1)
    stats = await _sink_stats(ctx.session, sink, run, True)
    arrivals: list[float] = stats["arrivals"]
    record: dict[str, Any] = {"delivered": len(arrivals), "loss": max(events - len(arrivals), 0),
                              "dup": stats["dup"]}
    busy = [busy_since(samples) for name, samples in cpu.items() if name.startswith("dispatcher")]
    lo, hi, why = window(arrivals, events, busy)
    if hi <= lo:
        return record
    start, end = arrivals[lo], arrivals[hi]
    span = end - start
    record |= {"rate": (hi - lo) / span, "window_s": span, "window_from": why,
               "rate_first_last": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
               "first_delivery_s": arrivals[0] - min(p.started for p in procs)}
    for name, samples in cpu.items():
        record[f"cpu_{name}"] = (_at(samples, end) - _at(samples, start)) / span
    record |= busy_between(_near(ticks, start), _near(ticks, end))
    total = sum(record[f"cpu_{name}"] for name in cpu)
    record["cpu_us_per_delivery"] = total / record["rate"] * 1e6
    return record


async def _replicas(ctx: Ctx, sink: str, sink_pid: int, count: int) -> dict[str, Any]:
    assert ctx.log_server is not None
    events = ctx.profile.replica_events
    store = ctx.store_url()
    run = ctx.run_name(f"S8-{count}")
    docs = [TriggerDoc(name="t0", subscriber=f"{sink}/t/0")]
    async with weir(ctx, docs, name=f"s8-ingress-{count}", store=store, role="ingress") as ingress:
        fill_rate = await _fill(ingress.url, run, events)
    procs: list[Proc] = []
    try:
        for k in range(count):
            folder = ctx.scratch(f"s8-dispatcher-{count}-{k + 1}")
            write_manifests(folder / "bench.yaml", docs)
            port = free_port()
            cmd = weir_command(ctx, folder, port, store=store, role="dispatcher", cpu=CORES[k % len(CORES)])
            procs.append(Proc(cmd, ctx.logs, f"s8-dispatcher-{count}-{k + 1}-{port}"))
        watched = {f"dispatcher_{k + 1}": p.pid for k, p in enumerate(procs)}
        watched |= {"sink": sink_pid, "log_server": ctx.log_server.pid}
        record = await _drain(ctx, sink, run, events, watched, procs)
    finally:
        await asyncio.gather(*(p.stop() for p in procs))
    return {"scenario": "S8", "target": f"weir x{count}", "backend": ctx.config.backend, "payload": 1024,
            "replicas": count, "events": events, "fill_rate": fill_rate, **record}


@contextlib.contextmanager
def _spread(pid: int) -> Iterator[None]:
    """Let ``pid`` run on both cores for a while (the log server is pinned to the load core)."""
    if not can_pin():
        yield
        return
    before = os.sched_getaffinity(pid)
    os.sched_setaffinity(pid, set(CORES))
    try:
        yield
    finally:
        os.sched_setaffinity(pid, before)


async def run(ctx: Ctx) -> Outcome:
    assert ctx.log_server is not None
    out = Outcome(scenario="S8", title=TITLE)
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    cmd = _both_cores([sys.executable, "-m", "bench.suite.fastsink", "--port", str(port)])
    async with running(cmd, ctx.logs, f"s8-fastsink-{port}", sink + "/") as sink_proc:
        with _spread(ctx.log_server.pid):
            for count in ctx.profile.replica_counts:
                out.records.append(await _replicas(ctx, sink, sink_proc.pid, count))
    _judge(ctx, out, ctx.log_server.version)
    return out


def _judge(ctx: Ctx, out: Outcome, log_server: str) -> None:
    by = {r["replicas"]: r for r in out.records}
    one, two = by.get(1), by.get(2)
    scaling = ratio(two.get("rate") if two else None, one.get("rate") if one else None)
    out.ratios = {"deliveries/s, 2 replicas / 1 replica (steady window)": scaling}
    out.baselines = {"1 replica (deliveries/s)": one.get("rate") if one else "not measured"}
    out.summary = {"scaling": scaling, "rates": {str(r["replicas"]): r.get("rate") for r in out.records}}
    out.checks = [at_least("S8 two dispatcher replicas against one (deliveries/s)", scaling,
                           SCALING_TARGET, "x")]
    out.checks += [at_most(f"S8 events lost, {r['replicas']} replica(s)", float(r["loss"]), 0, "events")
                   for r in out.records]
    out.body.append(
        f"{ctx.profile.replica_events:,} events pre-filled per run; dispatcher 1 on core {CORES[0]}, "
        f"dispatcher 2 on core {CORES[1]}; the fast sink and the log server ({log_server}) may "
        "run on both cores. CPU columns are cores (1.00 = one core busy) over the steady window.\n\n"
        + table(out.records, COLUMNS))
    for r in out.records:
        hot = [name.replace("_", " ") for name in ("sink", "log_server") if r.get(f"cpu_{name}", 0) >= BUSY]
        if hot:
            out.notes.append(f"{r['replicas']} replica(s): the {' and the '.join(hot)} used more than "
                             f"{BUSY:.0%} of a core: a bottleneck.")
        if min(r.get("sut_core_busy", 0), r.get("load_core_busy", 0)) >= 0.95:
            out.notes.append(f"{r['replicas']} replica(s): both cores were busy through the window: the "
                             "dispatchers, the sink and the log server together used the whole machine.")
    if one is not None and one.get("cpu_us_per_delivery"):
        bound = len(CORES) * 1e6 / one["cpu_us_per_delivery"] / one["rate"]
        out.notes.append(
            f"With 1 replica every delivery cost {one['cpu_us_per_delivery']:,.0f} µs of CPU across the "
            f"dispatcher, sink and log server; at that cost {len(CORES)} cores allow at most {bound:.2f}x "
            "the 1-replica rate, whatever the number of replicas.")
