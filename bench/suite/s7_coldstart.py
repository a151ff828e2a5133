"""S7: cold start, from process start to the first accepted event, and the first 100 events.

For each repeat, each target is started fresh and probed with a valid event every few milliseconds
until it answers 2xx; the time from spawning the process to that answer is its cold start. Weir
starts with one Broker and one Trigger on an empty store; right after its first 202, 100 events are
sent open-loop at the S1 latency rate and their latency to the sink is reported. Baselines: raw ASGI
(Python + uvicorn + nothing) and the bare relay B2.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp

from bench.suite.checks import Outcome, ratio
from bench.suite.context import Ctx
from bench.suite.openloop import EVENT_TYPE
from bench.suite.procs import SUT_CPU, Proc, free_port, pinned
from bench.suite.render import Column, table
from bench.suite.step import Step, measure
from bench.suite.targets import fanout, relay_command, weir_command, write_manifests

TITLE = "S7: cold start (issue 3)"
FIRST = 100
PROBE_EVERY = 0.005
COLUMNS: tuple[Column, ...] = (
    ("target", "target", ""),
    ("repeat", "repeat", "d"),
    ("start → first 202 ms", "cold_start_ms", ",.0f"),
    ("first 100: p50 ms", "p50", ".2f"),
    ("p99 ms", "p99", ".2f"),
    ("max ms", "max", ".2f"),
    ("loss", "loss", "d"),
    ("RSS MB", "rss_mb", ".0f"),
)


async def first_accept(url: str, proc: Proc, run: str, timeout: float = 120.0) -> float:
    """``time.time()`` of the first 2xx answer to a valid event POSTed to ``url``."""
    deadline = time.monotonic() + timeout
    i = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {proc.stderr_tail()}")
            headers = {"ce-specversion": "1.0", "ce-type": EVENT_TYPE, "ce-source": "/bench/cold",
                       "ce-id": f"{run}-{i}", "ce-benchsent": repr(time.time()),
                       "content-type": "application/json"}
            i += 1
            try:
                async with session.post(url, data=b"{}", headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        return time.time()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(PROBE_EVERY)
    raise TimeoutError(f"{proc.name}: no event accepted within {timeout}s")


async def _cold(ctx: Ctx, target: str, repeat: int) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if target == "weir":
        folder = ctx.scratch(f"s7-{repeat}")
        write_manifests(folder / "bench.yaml", fanout(ctx.sink, 1, 1))
        cmd, url = weir_command(ctx, folder, port), f"{base}/default/default"
    elif target == "B2":
        cmd, url = relay_command(ctx, port, "/cold/0"), base + "/"
    else:
        cmd = pinned(SUT_CPU, [sys.executable, "-m", "bench.servers", "accept", "--port", str(port)])
        url = base + "/"
    proc = Proc(cmd, ctx.logs, f"s7-{target}-{repeat}-{port}")
    try:
        accepted = await first_accept(url, proc, ctx.run_name(f"probe-{target}"))
        record: dict[str, Any] = {"scenario": "S7", "target": target, "backend": ctx.config.backend,
                                  "repeat": repeat, "cold_start_ms": (accepted - proc.started) * 1e3}
        if target == "weir":
            rate = ctx.profile.latency_rate
            step = Step(scenario="S7", target=target, url=url, pid=proc.pid, rate=rate, seconds=FIRST / rate)
            first = await measure(ctx, step)
            record |= {k: first[k] for k in ("p50", "p99", "max", "loss", "payload", "offered")}
        record["rss_mb"] = proc.usage().rss_mb
        return record
    finally:
        await proc.stop()


async def run(ctx: Ctx) -> Outcome:
    out = Outcome(scenario="S7", title=TITLE)
    for repeat in range(ctx.profile.cold_repeats):
        for target in ("raw ASGI", "B2", "weir"):
            out.records.append(await _cold(ctx, target, repeat))

    def median(target: str, key: str) -> float | None:
        values = [r[key] for r in out.records if r["target"] == target and r.get(key) is not None]
        return statistics.median(values) if values else None

    out.baselines = {
        "raw ASGI start → first 202 (ms)": median("raw ASGI", "cold_start_ms"),
        "B2 start → first 202 (ms)": median("B2", "cold_start_ms"),
    }
    weir_ms = median("weir", "cold_start_ms")
    out.ratios = {
        "Weir / raw ASGI cold start": ratio(weir_ms, median("raw ASGI", "cold_start_ms")),
        "Weir / B2 cold start": ratio(weir_ms, median("B2", "cold_start_ms")),
    }
    out.summary = {
        "weir_cold_start_ms": median("weir", "cold_start_ms"),
        "first_100_p50_ms": median("weir", "p50"),
        "first_100_p99_ms": median("weir", "p99"),
    }
    out.body.append(
        f"Medians over {ctx.profile.cold_repeats} repeat(s): Weir {_ms(out.summary['weir_cold_start_ms'])} "
        f"from process start to the first 202; its first {FIRST} events (open loop at "
        f"{ctx.profile.latency_rate:,.0f} ev/s) p50 {_ms(out.summary['first_100_p50_ms'], 2)}, "
        f"p99 {_ms(out.summary['first_100_p99_ms'], 2)}. The issue sets no target for S7.\n\n"
        + table(out.records, COLUMNS)
    )
    return out


def _ms(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f} ms"
