"""S4: memory and apply time with 0, 1,000 and 10,000 Triggers on one Broker.

*Start*: ``weir run`` is started on manifests with N Triggers (one of them matching the benchmark
events); apply time is from process start to the admin API showing the last Trigger Ready (all are
then checked Ready in one listing). RSS is read a second later. *Hot reload*: Weir runs with only
the Broker and watches its folder; the N Triggers are written into a new file and apply time is from
that write to the last Trigger Ready. Memory per 1,000 Triggers is RSS(N) − RSS(0), scaled.
Idle CPU is read over a few seconds without events. With N > 0 a delivery step at a fixed rate
checks that many Triggers cost event delivery nothing.
"*No cliff*": from the smallest to the largest N, memory and apply time per Trigger and CPU per event
grow by less than :data:`CLIFF`×.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.suite.checks import Outcome, at_least, at_most, get, ratio
from bench.suite.context import Ctx
from bench.suite.procs import Proc, free_port, wait_http
from bench.suite.render import Column, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import (
    TriggerDoc,
    fanout,
    relay,
    triggers_ready,
    wait_trigger_ready,
    weir_command,
    write_manifests,
)

TITLE = "S4: memory and apply time against Trigger count (issue 3)"
CLIFF = 2.0
SETTLE = 1.0
COLUMNS: tuple[Column, ...] = (
    ("Triggers", "triggers", ",d"),
    ("start → all Ready s", "apply_start_s", ".2f"),
    ("manifest write → all Ready s (hot reload)", "apply_reload_s", ".2f"),
    ("RSS MiB", "rss_mb", ".1f"),
    ("peak RSS MiB", "hwm_mb", ".1f"),
    ("MiB per 1,000 Triggers", "mib_per_1000", ".2f"),
    ("RSS after hot reload MiB", "rss_reload_mb", ".1f"),
    ("idle CPU (no events)", "idle_cpu_share", "pct"),
    ("achieved ev/s", "achieved", ",.0f"),
    ("p99 ms", "p99", ".2f"),
    ("max ms", "max", ".1f"),
    ("SUT CPU µs/event", "sut_cpu_us_per_event", ",.0f"),
    ("SUT core busy", "sut_core_busy", "pct"),
)


def _docs(ctx: Ctx, n: int) -> list[TriggerDoc]:
    return fanout(ctx.sink, n, 1 if n else 0)


async def _wait_applied(ctx: Ctx, base: str, docs: list[TriggerDoc], proc: Proc) -> float:
    if not docs:
        while True:
            async with ctx.session.get(base + "/readyz") as response:
                if response.status == 200:
                    return time.time()
            await asyncio.sleep(0.02)
    ready = await wait_trigger_ready(ctx, base, docs[-1].name, timeout=600)
    if not await triggers_ready(ctx, base, [d.name for d in docs]):
        raise RuntimeError(f"not every Trigger is Ready:\n{proc.stderr_tail()}")
    return ready


async def _start(ctx: Ctx, n: int) -> dict[str, Any]:
    docs = _docs(ctx, n)
    folder = ctx.scratch(f"s4-{n}")
    write_manifests(folder / "bench.yaml", docs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(weir_command(ctx, folder, port), ctx.logs, f"s4-start-{n}-{port}")
    try:
        await wait_http(base + "/healthz", timeout=600, proc=proc.popen)
        ready = await _wait_applied(ctx, base, docs, proc)
        await asyncio.sleep(SETTLE)
        use = proc.usage()
        # Idle CPU shows work that grows with the Triggers rather than with the events.
        await asyncio.sleep(ctx.profile.idle_seconds)
        idle = proc.usage()
        record: dict[str, Any] = {
            "scenario": "S4", "target": "weir", "backend": ctx.config.backend, "triggers": n,
            "apply_start_s": ready - proc.started, "rss_mb": use.rss_mb, "hwm_mb": use.hwm_mb,
            "idle_cpu_share": (idle.cpu_s - use.cpu_s) / (idle.at - use.at),
        }
        if n:
            url = f"{base}/default/default"
            await warm_up(ctx, url)
            step = Step(scenario="S4", target="weir", url=url, pid=proc.pid, rate=ctx.profile.fanout_rate,
                        seconds=ctx.profile.step_seconds, extra={"triggers": n})
            delivery = await measure(ctx, step)
            kept = ("p50", "p99", "max", "loss", "dup", "sut_cpu_us_per_event", "achieved", "sut_core_busy")
            record |= {k: delivery[k] for k in kept}
        return record
    finally:
        await proc.stop()


async def _reload(ctx: Ctx, n: int) -> dict[str, float]:
    docs = _docs(ctx, n)
    folder = ctx.scratch(f"s4-reload-{n}")
    write_manifests(folder / "broker.yaml", [])
    staged = write_manifests(ctx.scratch(f"s4-staged-{n}") / "triggers.yaml", docs, broker=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(weir_command(ctx, folder, port, watch=True), ctx.logs, f"s4-reload-{n}-{port}")
    try:
        await wait_http(base + "/readyz", timeout=60, proc=proc.popen)
        await asyncio.sleep(SETTLE)  # let the watcher start before the change it must see
        written = time.time()
        os.replace(staged, folder / "triggers.yaml")
        ready = await _wait_applied(ctx, base, docs, proc)
        await asyncio.sleep(SETTLE)
        return {"apply_reload_s": ready - written, "rss_reload_mb": proc.usage().rss_mb}
    finally:
        await proc.stop()


async def _relay_idle_rss(ctx: Ctx) -> float:
    async with relay(ctx) as b2:
        await asyncio.sleep(SETTLE)
        assert b2.proc is not None
        return float(b2.proc.usage().rss_mb)


def _per(record: dict[str, Any] | None, key: str) -> float | None:
    if record is None or not record["triggers"] or record.get(key) is None:
        return None
    return float(record[key]) / int(record["triggers"])


async def run(ctx: Ctx) -> Outcome:
    out = Outcome(scenario="S4", title=TITLE)
    counts = sorted(ctx.profile.trigger_counts)
    for n in counts:
        record = await _start(ctx, n)
        if n:
            record |= await _reload(ctx, n)
        out.records.append(record)
    zero = next((r for r in out.records if r["triggers"] == 0), None)
    for record in out.records:
        if zero is not None and record["triggers"]:
            record["mib_per_1000"] = (record["rss_mb"] - zero["rss_mb"]) / record["triggers"] * 1000
    nonzero = [r for r in out.records if r["triggers"]]
    small, large = (nonzero[0], nonzero[-1]) if nonzero else (None, None)
    growth = {
        "memory per Trigger": _growth(get(large, "mib_per_1000"), get(small, "mib_per_1000")),
        "apply time per Trigger (start)": _growth(_per(large, "apply_start_s"), _per(small, "apply_start_s")),
        "apply time per Trigger (hot reload)": _growth(_per(large, "apply_reload_s"),
                                                       _per(small, "apply_reload_s")),
        "CPU per event": _growth(get(large, "sut_cpu_us_per_event"), get(small, "sut_cpu_us_per_event")),
    }
    worst = max((g for g in growth.values() if g is not None), default=None)
    out.summary = {"growth_small_to_large": growth, "records": len(out.records)}
    idle = await _relay_idle_rss(ctx)
    out.baselines = {"B2 (bare relay) idle RSS (MiB)": idle}
    if zero is not None:
        out.ratios = {"Weir idle RSS with 0 Triggers / B2 idle RSS": zero["rss_mb"] / idle}
    at = f" (at {large['triggers']:,})" if large else ""
    out.checks = [at_most(f"S4 memory per 1,000 Triggers{at}", get(large, "mib_per_1000"), 1.0, "MiB")]
    if large is not None and small is not None and small is not large:
        span = f"{small['triggers']:,} → {large['triggers']:,}"
        out.checks.append(at_most(f"S4 no cliff: worst growth per Trigger, {span}", worst, CLIFF, "x"))
        achieved = get(large, "achieved")
        delivered = achieved / ctx.profile.fanout_rate if achieved is not None else None
        what = f"S4 delivery with {large['triggers']:,} Triggers: achieved / offered"
        out.checks.append(at_least(what, delivered, 0.99, "x"))
    one = _one_trigger_p99(ctx)
    if large is not None:
        out.baselines["p99 with 1 Trigger at the same rate (ms)"] = one if one is not None else "not measured"
        what = f"S4 no cliff: p99 with {large['triggers']:,} Triggers / p99 with 1 Trigger"
        out.checks.append(at_most(what, ratio(get(large, "p99"), one), CLIFF, "x"))
    out.body.append(
        f"Delivery step: {ctx.profile.fanout_rate:,.0f} ev/s for {ctx.profile.step_seconds:.0f} s, one of "
        "the Triggers matching; idle CPU read over "
        f"{ctx.profile.idle_seconds:.0f} s without events.\n\n" + table(out.records, COLUMNS)
    )
    shown = "; ".join(f"{k} {'–' if v is None else f'{v:.2f}x'}" for k, v in growth.items())
    out.body.append(f"Growth from the smallest to the largest Trigger count (1.00x = linear): {shown}.")
    return out


def _one_trigger_p99(ctx: Ctx) -> float | None:
    """p99 of Weir with one Trigger at the S4 delivery rate, from S1 or S3 (this run or today's file)."""
    rate = ctx.profile.fanout_rate
    for record in [*ctx.records_of("S1"), *ctx.records_of("S3")]:
        one = record["target"] == "weir" and record.get("triggers", 1) == 1
        if one and record["offered"] == rate and record["payload"] == 1024:
            return get(record, "p99")
    return None


def _growth(large: float | None, small: float | None) -> float | None:
    if large is None or small is None or small <= 0:
        return None
    return max(large, 0.0) / small
