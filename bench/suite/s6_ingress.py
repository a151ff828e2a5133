"""S6: ingress only. ``wrk -t1`` (closed loop) against raw ASGI and against Weir's persisted ingress.

Raw ASGI is :func:`bench.servers.accept_app` (reads the body, answers 202). Weir serves one Broker with
no Trigger, so every request is parsed, stored durably and answered 202 with nothing dispatched.
Both run alone on core 0; wrk runs on core 1 with 16 and 64 connections, 1 KB binary-mode events
with unique ids. Without wrk, the closed-loop aiohttp poster of :mod:`bench.load` stands in.

On a shared backend B3's ingress (``--ingress-only``: ``js.publish`` or ``send_and_wait``, then
202, nothing consumed) is measured too, and Weir is held to 0.6x of it twice: as ``--role all``
(its router also reads the log back and moves a cursor, which adds load on the log server) and
as an ingress replica (``--role ingress``: it stores and answers and consumes nothing, like B3).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import Any

from bench import load
from bench.suite import profiler
from bench.suite.checks import Outcome, at_least, get, ratio
from bench.suite.config import SHARED
from bench.suite.context import Ctx
from bench.suite.machine import busy_between, core_times
from bench.suite.procs import LOAD_CPU, SUT_CPU, free_port, pinned, running, usage
from bench.suite.render import Column, table
from bench.suite.targets import Sut, relay, weir

TITLE = "S6: ingress only, persisted 202 (issue 3)"
RELAY = "B3"
INGRESS_ROLE = "weir --role ingress"
WARMUP_SECONDS = 1
COLUMNS: tuple[Column, ...] = (
    ("target", "target", ""),
    ("connections", "connections", "d"),
    ("requests/s", "achieved", ",.0f"),
    ("SUT CPU µs/request", "sut_cpu_us_per_event", ",.0f"),
    ("RSS MB", "rss_mb", ".0f"),
    ("SUT core busy", "sut_core_busy", "pct"),
    ("load core busy", "load_core_busy", "pct"),
)


async def rate(url: str, seconds: int, connections: int) -> tuple[float, str]:
    """Requests/s and the tool that measured them."""
    if shutil.which("wrk"):
        found = await asyncio.to_thread(load.wrk, url, seconds, connections, 1024, str(LOAD_CPU))
        if found is not None:
            return found, f"wrk -t1 -c{connections}"
    result = await load.post(url, seconds, connections, 1024)
    return result["accepted"] / result["seconds"], f"aiohttp closed-loop poster, {connections} connections"


async def _measure(ctx: Ctx, sut: Sut, connections: int) -> dict[str, Any]:
    assert sut.pid is not None
    seconds = ctx.profile.wrk_seconds
    await rate(sut.url, WARMUP_SECONDS, connections)
    u0, c0 = usage(sut.pid), core_times()
    rps, tool = await rate(sut.url, seconds, connections)
    u1, c1 = usage(sut.pid), core_times()
    return {
        "scenario": "S6", "target": sut.name, "backend": ctx.config.backend, "payload": 1024,
        "connections": connections, "offered": None, "achieved": rps, "tool": tool,
        "sut_cpu_us_per_event": (u1.cpu_s - u0.cpu_s) / (rps * (u1.at - u0.at)) * 1e6 if rps else None,
        "rss_mb": u1.rss_mb, **busy_between(c0, c1),
    }


async def run(ctx: Ctx) -> Outcome:
    out = Outcome(scenario="S6", title=TITLE)
    port = free_port()
    raw_cmd = pinned(SUT_CPU, [sys.executable, "-m", "bench.servers", "accept", "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    async with running(raw_cmd, ctx.logs, f"raw-asgi-{port}", base + "/") as proc:
        raw = Sut(name="raw ASGI", url=base + "/default/default", pid=proc.pid)
        for c in ctx.profile.wrk_connections:
            out.records.append(await _measure(ctx, raw, c))
    bare = f"{RELAY} ingress"
    if ctx.config.backend in SHARED:
        async with relay(ctx, ingress_only=True) as started:
            target = Sut(name=bare, url=started.url, pid=started.pid)
            for c in ctx.profile.wrk_connections:
                out.records.append(await _measure(ctx, target, c))
    async with weir(ctx, [], name="s6-weir") as sut:
        for c in ctx.profile.wrk_connections:
            out.records.append(await _measure(ctx, sut, c))
        top = max(ctx.profile.wrk_connections)
        got = ratio(_rps(out.records, "weir", top), _rps(out.records, "raw ASGI", top))
        if ctx.profile.profile_seconds and got is not None and got < 0.35:
            assert sut.pid is not None
            seconds = ctx.profile.profile_seconds
            file = ctx.logs / "s6-weir-ingress.pyspy.txt"
            summary, _ = await asyncio.gather(profiler.record(sut.pid, seconds, file),
                                              rate(sut.url, round(seconds), top))
            out.profiles[f"Weir ingress under wrk -c{top}"] = summary
    if ctx.config.backend in SHARED:
        async with weir(ctx, [], name="s6-weir-ingress", role="ingress") as replica:
            for c in ctx.profile.wrk_connections:
                out.records.append(await _measure(ctx, Sut(name=INGRESS_ROLE, url=replica.url,
                                                           pid=replica.pid), c))
    for c in ctx.profile.wrk_connections:
        out.ratios[f"Weir / raw ASGI requests/s, {c} connections"] = ratio(
            _rps(out.records, "weir", c), _rps(out.records, "raw ASGI", c))
        out.baselines[f"raw ASGI, {c} connections (req/s)"] = _rps(out.records, "raw ASGI", c)
        if ctx.config.backend in SHARED:
            out.ratios[f"Weir / {bare} requests/s, {c} connections"] = ratio(
                _rps(out.records, "weir", c), _rps(out.records, bare, c))
            out.baselines[f"{bare}, {c} connections (req/s)"] = _rps(out.records, bare, c)
            out.ratios[f"Weir ingress replica / {bare} requests/s, {c} connections"] = ratio(
                _rps(out.records, INGRESS_ROLE, c), _rps(out.records, bare, c))
    top = max(ctx.profile.wrk_connections)
    out.checks = [at_least(f"S6 persisted ingress against raw ASGI ({top} connections)",
                           out.ratios[f"Weir / raw ASGI requests/s, {top} connections"], 0.35, "x")]
    if ctx.config.backend in SHARED:
        out.checks.append(at_least(f"S6 persisted ingress against {bare} ({top} connections)",
                                   out.ratios[f"Weir / {bare} requests/s, {top} connections"], 0.6, "x"))
        out.checks.append(at_least(
            f"S6 ingress replica (--role ingress) against {bare} ({top} connections)",
            out.ratios[f"Weir ingress replica / {bare} requests/s, {top} connections"], 0.6, "x"))
    out.summary = {"tool": out.records[0]["tool"] if out.records else None}
    out.body.append(f"Load: {out.summary['tool']} (closed loop), 1 KB binary-mode events, "
                    f"{ctx.profile.wrk_seconds} s per run after a {WARMUP_SECONDS} s warm-up.\n\n"
                    + table(out.records, COLUMNS))
    return out


def _rps(records: list[dict[str, Any]], target: str, connections: int) -> float | None:
    found = next((r for r in records if r["target"] == target and r["connections"] == connections), None)
    return get(found, "achieved")
