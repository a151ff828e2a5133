"""One measured open-loop step against one target, turned into one result record.

A record is a dict with at least ``scenario, target, backend, payload, offered, achieved, loss, dup,
p50, p99, p999, max, sut_cpu_us_per_event, rss_mb`` (latencies in ms, rates in events/s, payload in
bytes, RSS in MB). ``achieved`` counts events whose deliveries reached the sink by the end of the
schedule plus :data:`GRACE`; ``loss`` is events × expected deliveries − distinct deliveries, so a
rejected event counts as lost. CPU is the SUT's user + system time over exactly the schedule,
divided by the events (and deliveries) scheduled in it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.suite.context import Ctx
from bench.suite.machine import CoreTimes, busy_between, core_times
from bench.suite.openloop import LoadSpec, generate
from bench.suite.procs import Usage, usage

GRACE = 0.25
"""Seconds after the last scheduled send that still count towards ``achieved``."""
SETTLE = 1.0
"""A drain ends once the sink saw nothing new for this many seconds."""
P99_LIMIT_MS = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    scenario: str
    target: str
    url: str
    pid: int | None
    """The system under test whose CPU and memory are read (``None``: nothing to read)."""
    rate: float
    seconds: float
    size: int = 1024
    matches: int = 1
    """Deliveries each event should get under ``prefix``."""
    prefix: str = "/t/"
    bucket: float | None = None
    drain: bool = True
    """Wait for every expected delivery (up to the profile's drain time); off for overload steps."""
    also: Mapping[str, int] = field(default_factory=dict)
    """Other sink path prefixes to report under ``record["also"]``, with the deliveries to wait for."""
    extra: Mapping[str, Any] = field(default_factory=dict)


EMPTY: dict[str, Any] = {
    "deliveries": 0, "events": 0, "dup": 0, "in_window": 0, "latency_ms": {}, "last_ms": {}
}


async def sink_stats(ctx: Ctx, run: str, **query: Any) -> dict[str, Any]:
    """The sink's statistics of ``run`` (:data:`EMPTY` when nothing of it arrived yet)."""
    params = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    async with ctx.session.get(f"{ctx.sink}/_stats?run={run}&{params}") as response:
        if response.status == 404:
            return dict(EMPTY)
        response.raise_for_status()
        stats: dict[str, Any] = await response.json()
        return stats


async def _drain(ctx: Ctx, run: str, prefix: str, expected: int, scale: float = 1.0) -> None:
    deadline = time.monotonic() + ctx.profile.drain_seconds * scale
    seen, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_seen = int((await sink_stats(ctx, run, prefix=prefix))["deliveries"])
        if now_seen >= expected:
            return
        if now_seen != seen:
            seen, last_change = now_seen, time.monotonic()
        elif time.monotonic() - last_change > SETTLE:
            return
        await asyncio.sleep(0.1)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


async def measure(ctx: Ctx, step: Step) -> dict[str, Any]:
    """Run ``step`` and return its record."""
    run = ctx.run_name(f"{step.scenario}-{step.target}")
    marks: dict[str, tuple[Usage | None, CoreTimes]] = {}

    def mark(name: str) -> None:
        marks[name] = (usage(step.pid) if step.pid else None, core_times())

    spec = LoadSpec(url=step.url, rate=step.rate, seconds=step.seconds, size=step.size, run=run)
    load = await generate(spec, on_start=lambda: mark("start"), on_sent=lambda: mark("sent"))
    expected = load.sent * step.matches
    if step.drain:
        await _drain(ctx, run, step.prefix, expected)
    else:
        await asyncio.sleep(GRACE)
    stats = await sink_stats(ctx, run, prefix=step.prefix, until=load.end + GRACE, bucket=step.bucket)
    also: dict[str, Any] = {}
    for prefix, wanted in step.also.items():
        # Deliveries elsewhere (dead letters) come after retries, so they get longer.
        await _drain(ctx, run, prefix, wanted, scale=2.0)
        also[prefix] = await sink_stats(ctx, run, prefix=prefix)
    async with ctx.session.delete(f"{ctx.sink}/_runs/{run}"):
        pass
    duration = load.end - load.start
    (u0, c0), (u1, c1) = marks["start"], marks["sent"]
    cpu_s = (u1.cpu_s - u0.cpu_s) if u0 and u1 else math.nan
    lat = stats["latency_ms"]
    in_window = int(stats.get("in_window", 0))
    record: dict[str, Any] = {
        "scenario": step.scenario,
        "target": step.target,
        "backend": ctx.config.backend,
        "payload": step.size,
        "offered": step.rate,
        "achieved": in_window / step.matches / duration,
        "loss": max(expected - int(stats["deliveries"]), 0),
        "dup": int(stats["dup"]),
        "p50": _num(lat.get("p50")),
        "p99": _num(lat.get("p99")),
        "p999": _num(lat.get("p999")),
        "max": _num(lat.get("max")),
        "sut_cpu_us_per_event": cpu_s / load.sent * 1e6,
        "rss_mb": u1.rss_mb if u1 else math.nan,
        "matches": step.matches,
        "deliveries_per_s": in_window / duration,
        "sut_cpu_us_per_delivery": cpu_s / max(expected, 1) * 1e6,
        "sut_cpu_share": cpu_s / duration,
        "last_p99": _num(stats["last_ms"].get("p99")),
        "seconds": round(duration, 3),
        "sent": load.sent,
        "accepted": load.accepted,
        "rejected": load.rejected,
        "errors": load.errors,
        "gen_lag_p99_ms": load.lag_p99_ms,
        "gen_cpu_us_per_event": load.cpu_s / load.sent * 1e6,
        **busy_between(c0, c1),
        **step.extra,
    }
    if "sut_core_busy" in record and not math.isnan(cpu_s):
        # Busy time on the SUT's core that was not the SUT's: other work disturbing the step.
        record["other_on_sut_core"] = max(record["sut_core_busy"] - record["sut_cpu_share"], 0.0)
    record["sustained"] = bool(
        record["achieved"] >= 0.99 * step.rate and record["loss"] == 0 and record["p99"] <= P99_LIMIT_MS
    )
    if also:
        record["also"] = also
    if "buckets" in stats:
        record["buckets"] = stats["buckets"]
    if stats.get("attempts", {}).get("events"):
        record["attempts"] = stats["attempts"]
    return record


async def warm_up(ctx: Ctx, url: str, *, rate: float | None = None, matches: int = 1) -> None:
    """Open-loop warm-up (connections, pools, lazy imports), not recorded; ``rate`` defaults to the
    profile's warm-up rate."""
    p = ctx.profile
    step = Step(scenario="warmup", target="warmup", url=url, pid=None, rate=rate or p.warmup_rate,
                seconds=p.warmup_seconds, matches=matches)
    await measure(ctx, step)
