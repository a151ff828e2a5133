"""S1: sustained throughput with one Trigger, against B1 (direct) and the bare relay of the backend
(B2 on SQLite or memory, B3 on NATS JetStream or Kafka).

Each target gets a warm-up, then the rate steps of the profile, stopping at the first step that is
not *sustained* (achieved < 99% of offered, any loss, or p99 > 100 ms). The maximum sustained rate is
the last step that held. The 1,000 ev/s step is the latency point; other payloads are measured at
that rate afterwards. When a Weir target is not met, py-spy records Weir at the first failing rate.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.suite import profiler
from bench.suite.checks import Outcome, at_least, at_most, get, ratio
from bench.suite.config import SHARED
from bench.suite.context import Ctx
from bench.suite.render import STEP_COLUMNS, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import Sut, direct, fanout, relay, relay_name, weir

TITLE = "S1: sustained throughput, 1 Trigger (issue 3)"
LOAD_BOUND = 0.9
"""Load-core busy share above which a failing step is blamed on the generator and sink, not the SUT."""


def max_sustained(records: list[dict[str, Any]]) -> float:
    best = 0.0
    for record in records:
        if not record["sustained"]:
            break
        best = record["offered"]
    return best


def at_rate(records: list[dict[str, Any]], rate: float, size: int = 1024) -> dict[str, Any] | None:
    return next((r for r in records if r["offered"] == rate and r["payload"] == size), None)


async def _ladder(ctx: Ctx, sut: Sut) -> list[dict[str, Any]]:
    await warm_up(ctx, sut.url)
    records = []
    for rate in ctx.profile.rates:
        step = Step(scenario="S1", target=sut.name, url=sut.url, pid=sut.pid, rate=rate,
                    seconds=ctx.profile.step_seconds)
        record = await measure(ctx, step)
        records.append(record)
        if not record["sustained"]:
            break
    return records


async def _payloads(ctx: Ctx, sut: Sut) -> list[dict[str, Any]]:
    p = ctx.profile
    return [
        await measure(ctx, Step(scenario="S1", target=sut.name, url=sut.url, pid=sut.pid, rate=p.latency_rate,
                                seconds=p.step_seconds, size=size))
        for size in p.payloads
    ]


async def _profile(ctx: Ctx, sut: Sut, rate: float) -> dict[str, Any]:
    assert sut.pid is not None
    seconds = ctx.profile.profile_seconds
    step = Step(scenario="S1-profile", target=sut.name, url=sut.url, pid=sut.pid, rate=rate, seconds=seconds)
    out = ctx.config.out_dir / f"logs{ctx.config.tag}" / f"s1-weir-{rate:.0f}.pyspy.txt"
    summary, record = await asyncio.gather(profiler.record(sut.pid, seconds, out), measure(ctx, step))
    summary["during"] = {k: record[k] for k in ("offered", "achieved", "p50", "p99", "sut_cpu_us_per_event")}
    return summary


async def run(ctx: Ctx) -> Outcome:
    p = ctx.profile
    out = Outcome(scenario="S1", title=TITLE)
    by_target: dict[str, list[dict[str, Any]]] = {}
    b1 = direct(ctx)
    by_target["B1"] = await _ladder(ctx, b1) + await _payloads(ctx, b1)
    rn = relay_name(ctx)
    async with relay(ctx) as bare:
        by_target[rn] = await _ladder(ctx, bare) + await _payloads(ctx, bare)
    async with weir(ctx, fanout(ctx.sink, 1, 1), name="s1-weir") as sut:
        ladder = await _ladder(ctx, sut)
        by_target["weir"] = ladder + await _payloads(ctx, sut)
        top = max_sustained(ladder)
        lat = at_rate(ladder, p.latency_rate)
        unmet = top < 2000 or lat is None or lat["p50"] > 3 or lat["p99"] > 10
        if p.profile_seconds and unmet:
            failing = next((r["offered"] for r in ladder if not r["sustained"]), ladder[-1]["offered"])
            out.profiles[f"Weir at {failing:,.0f} ev/s, the first rate not sustained"] = await _profile(
                ctx, sut, failing
            )
    for records in by_target.values():
        out.records.extend(records)

    maxima = {t: max_sustained([r for r in rs if r["payload"] == 1024]) for t, rs in by_target.items()}
    at1k = {t: at_rate(rs, p.latency_rate) for t, rs in by_target.items()}
    ctx.shared["S1.max"] = maxima["weir"]
    ctx.shared["S1.all"] = out.records
    ctx.shared["S1.records"] = by_target["weir"]
    ctx.shared["S1.relay"] = by_target[rn]
    out.summary = {
        "max_sustained": maxima,
        "latency_at": p.latency_rate,
        "p50_at": {t: r["p50"] if r else None for t, r in at1k.items()},
        "p99_at": {t: r["p99"] if r else None for t, r in at1k.items()},
        "cpu_us_at": {t: r["sut_cpu_us_per_event"] if r else None for t, r in at1k.items()},
    }
    out.baselines = {
        "B1 max sustained (ev/s)": maxima["B1"],
        f"{rn} max sustained (ev/s)": maxima[rn],
    }
    if ctx.config.backend not in SHARED:
        out.baselines["B3"] = "measured with --backend nats and --backend kafka (their own sections)"
    weir1k, bare1k = at1k["weir"], at1k[rn]
    at = f"at {p.latency_rate:,.0f} ev/s"
    out.ratios = {
        f"Weir max / {rn} max": ratio(maxima["weir"], maxima[rn]),
        "Weir max / B1 max": ratio(maxima["weir"], maxima["B1"]),
        f"Weir p50 / {rn} p50 {at}": ratio(get(weir1k, "p50"), get(bare1k, "p50")),
        f"Weir p99 / {rn} p99 {at}": ratio(get(weir1k, "p99"), get(bare1k, "p99")),
        f"Weir CPU/event / {rn} CPU/event {at}": ratio(
            get(weir1k, "sut_cpu_us_per_event"), get(bare1k, "sut_cpu_us_per_event")
        ),
    }
    out.checks = [
        at_least("S1 sustained end to end, 1 KB, 1 Trigger", maxima["weir"], 2000, "ev/s"),
        at_least("S1 stretch", maxima["weir"], 3000, "ev/s"),
        at_least(f"S1 against {rn} (max sustained)", out.ratios[f"Weir max / {rn} max"], 0.6, "x"),
        at_most(f"p50 at {p.latency_rate:,.0f} ev/s", get(weir1k, "p50"), 3.0, "ms"),
        at_most(f"p99 at {p.latency_rate:,.0f} ev/s", get(weir1k, "p99"), 10.0, "ms"),
    ]
    out.body.append(
        "Rate steps (1 KB; each target stops at its first step that is not sustained), then the other "
        f"payloads at {p.latency_rate:,.0f} ev/s:\n\n" + table(out.records, STEP_COLUMNS)
    )
    out.notes.append(
        f"Each step is a single {p.step_seconds:.0f} s sample on a shared 2-core machine (see the load "
        "average above); repeated runs differ, so compare ratios within one run rather than absolute "
        "rates across runs."
    )
    load = "generator, sink and log server" if ctx.config.backend in SHARED else "generator and sink"
    for target, records in by_target.items():
        failing = next((r for r in records if not r["sustained"] and r["payload"] == 1024), None)
        if failing is not None and failing.get("load_core_busy", 0) >= LOAD_BOUND:
            out.notes.append(
                f"{target} stopped at {failing['offered']:,.0f} ev/s with the load core "
                f"{failing['load_core_busy']:.0%} busy: that step is bound by the {load}, "
                f"so {target}'s real maximum is at least {maxima[target]:,.0f} ev/s and may be higher."
            )
        if failing is None and records:
            out.notes.append(f"{target} sustained every rate step; its maximum is above the last step.")
    return out
