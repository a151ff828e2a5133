"""S3: fan-out with N = 1, 10, 100, 1,000 Triggers: all match, one matches, or N/10 match.

Each (N, matching) pair gets its own Weir. A *fixed* step offers ``min(fanout_rate, budget / matching)``
events/s, so deliveries stay within what one core can do and loss, latency (per delivery, and from
send to the *last* delivery of an event) and CPU per delivery are comparable. With every Trigger
matching and N >= 10, a *saturation* step then offers more deliveries than the 6,000/s target; its
deliveries/s are those that reached the sink during the schedule (the backlog is not waited for).

The cost of Triggers that do not match is the CPU per event with the largest N of which one
matches, against one Trigger alone, at the same rate. One such pair of steps differs by several
percent between runs of the same code, as much as the 5% bar, so the pair is measured in
``nonmatching_rounds`` rounds, each step on a fresh Weir and the order alternating from round to
round; the check takes the median of the rounds' ratios.

Each saturation step is repeated against the bare relay with ``--fanout N`` (every event stored
once and POSTed to the N sink paths, no filtering) at the same offered rate, and Weir's
deliveries/s are divided by the relay's: B3 on a shared backend, B2 on the embedded store. On a
shared backend that ratio is checked (at least 0.6); on the embedded store it is context only (how
fast the machine was in that run), the target there being the absolute 6,000 deliveries/s.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench.suite import profiler
from bench.suite.checks import Outcome, at_least, at_most, get, ratio
from bench.suite.config import SHARED
from bench.suite.context import Ctx
from bench.suite.render import Column, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import Sut, fanout, relay, relay_name, weir

TITLE = "S3: fan-out (issue 3)"
DELIVERIES_TARGET = 6000.0
COLUMNS: tuple[Column, ...] = (
    ("target", "target", ""),
    ("Triggers", "triggers", ",d"),
    ("matching", "matches", ",d"),
    ("step", "step", ""),
    ("offered ev/s", "offered", ",.1f"),
    ("offered deliveries/s", "offered_deliveries", ",.0f"),
    ("deliveries/s", "deliveries_per_s", ",.0f"),
    ("loss", "loss", ",d"),
    ("dup", "dup", ",d"),
    ("p50 ms", "p50", ".2f"),
    ("p99 ms", "p99", ".2f"),
    ("last-delivery p99 ms", "last_p99", ".2f"),
    ("SUT CPU µs/event", "sut_cpu_us_per_event", ",.0f"),
    ("SUT CPU µs/delivery", "cpu_us_per_delivered", ",.0f"),
    ("RSS MB", "rss_mb", ".0f"),
    ("SUT core busy", "sut_core_busy", "pct"),
    ("load core busy", "load_core_busy", "pct"),
)


def matching(n: int, shape: str) -> int:
    return {"all": n, "one": 1, "tenth": max(1, n // 10)}[shape]


def _finish(record: dict[str, Any], n: int, step: str) -> dict[str, Any]:
    record["triggers"] = n
    record["step"] = step
    record["offered_deliveries"] = record["offered"] * record["matches"]
    share, delivered = record["sut_cpu_share"], record["deliveries_per_s"]
    record["cpu_us_per_delivered"] = share / delivered * 1e6 if delivered else None
    return record


async def _fixed(ctx: Ctx, sut: Sut, n: int, m: int, step: str = "fixed") -> dict[str, Any]:
    """A warm-up, then the fixed step of ``n`` Triggers of which ``m`` match."""
    p = ctx.profile
    await warm_up(ctx, sut.url, rate=min(p.warmup_rate, p.fanout_budget / m / 2), matches=m)
    rate = min(p.fanout_rate, p.fanout_budget / m)
    fixed = Step(scenario="S3", target="weir", url=sut.url, pid=sut.pid, rate=rate, seconds=p.step_seconds,
                 matches=m)
    return _finish(await measure(ctx, fixed), n, step)


async def _config(ctx: Ctx, sut: Sut, n: int, m: int, profile_it: bool) -> tuple[list[dict[str, Any]], Any]:
    p = ctx.profile
    records = [await _fixed(ctx, sut, n, m)]
    summary = None
    if m == n and n >= 10:
        over = Step(scenario="S3", target="weir", url=sut.url, pid=sut.pid, rate=p.fanout_offered / n,
                    seconds=p.step_seconds, matches=m, drain=False)
        records.append(_finish(await measure(ctx, over), n, "saturation"))
        if profile_it and records[-1]["deliveries_per_s"] < DELIVERIES_TARGET:
            assert sut.pid is not None
            out = ctx.logs / f"s3-weir-{n}-all.pyspy.txt"
            again = Step(scenario="S3-profile", target="weir", url=sut.url, pid=sut.pid, rate=over.rate,
                         seconds=p.profile_seconds, matches=m, drain=False)
            summary, _ = await asyncio.gather(profiler.record(sut.pid, p.profile_seconds, out),
                                              measure(ctx, again))
    return records, summary


async def _relay_saturation(ctx: Ctx, n: int) -> dict[str, Any]:
    """The bare relay (B2 or B3) fanning every event out to ``n`` sink paths, at the saturation
    step's offered rate."""
    p = ctx.profile
    async with relay(ctx, "/t/{k}", fanout=n) as bare:
        await warm_up(ctx, bare.url, rate=min(p.warmup_rate, p.fanout_budget / n / 2), matches=n)
        step = Step(scenario="S3", target=bare.name, url=bare.url, pid=bare.pid, rate=p.fanout_offered / n,
                    seconds=p.step_seconds, matches=n, drain=False)
        record = _finish(await measure(ctx, step), n, "saturation")
    return record


async def _more_rounds(ctx: Ctx, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Rounds 2.. of the pair (1 Trigger, ``n`` Triggers of which 1 matches): each step on a fresh
    Weir, the order alternating, so a drift in the machine's speed touches both alike."""
    pairs = []
    for k in range(2, ctx.profile.nonmatching_rounds + 1):
        got: dict[int, dict[str, Any]] = {}
        for size in (n, 1) if k % 2 == 0 else (1, n):
            async with weir(ctx, fanout(ctx.sink, size, 1), name=f"s3-weir-{size}-1-round{k}") as sut:
                got[size] = await _fixed(ctx, sut, size, 1, step=f"fixed, round {k}")
        pairs.append((got[1], got[n]))
    return pairs


async def run(ctx: Ctx) -> Outcome:
    p = ctx.profile
    out = Outcome(scenario="S3", title=TITLE)
    done: set[tuple[int, int]] = set()
    profile_n = 100 if 100 in p.fanout_triggers else max(p.fanout_triggers)
    for n in p.fanout_triggers:
        for shape in p.fanout_shapes:
            m = matching(n, shape)
            if (n, m) in done:
                continue
            done.add((n, m))
            async with weir(ctx, fanout(ctx.sink, n, m), name=f"s3-weir-{n}-{m}") as sut:
                records, summary = await _config(ctx, sut, n, m, bool(p.profile_seconds) and n == profile_n)
            out.records.extend(records)
            if summary is not None:
                out.profiles[f"Weir, {n} Triggers all matching, saturated"] = summary

    rn = relay_name(ctx)
    saturated = [r["triggers"] for r in out.records if r["step"] == "saturation"]
    for n in saturated:
        bare = await _relay_saturation(ctx, n)
        out.records.append(bare)
        mine = next(r for r in out.records if r["target"] == "weir" and r["triggers"] == n
                    and r["step"] == "saturation")
        got = ratio(mine["deliveries_per_s"], bare["deliveries_per_s"])
        out.ratios[f"Weir / {rn} deliveries/s, {n:,} Triggers all matching, saturated"] = got
        # The embedded store's target is the absolute 6,000 deliveries/s; there the ratio only
        # shows how fast the machine was in this run.
        if ctx.config.backend in SHARED:
            out.checks.append(at_least(f"S3 against {rn}: deliveries/s, {n:,} all matching, saturated",
                                       got, 0.6, "x"))

    def find(n: int, m: int, step: str = "fixed") -> dict[str, Any] | None:
        wanted = ("weir", n, m, step)
        keys = ("target", "triggers", "matches", "step")
        return next((r for r in out.records if tuple(r[k] for k in keys) == wanted), None)

    ctx.shared["S3.all"] = out.records
    saturation = [r for r in out.records if r["step"] == "saturation" and r["target"] == "weir"]
    best = max(saturation, key=lambda r: r["deliveries_per_s"], default=None)
    n_max = max(p.fanout_triggers)
    alone, many = find(1, 1), find(n_max, 1)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(alone, many)]
    if alone is not None and many is not None and n_max > 1:
        more = await _more_rounds(ctx, n_max)
        pairs += more
        out.records.extend(r for pair in more for r in pair)
    cpu = [(get(x, "sut_cpu_us_per_event"), get(y, "sut_cpu_us_per_event")) for x, y in pairs]
    per_round = [y / x for x, y in cpu if x and y is not None] if n_max > 1 else []
    a = statistics.median(x for x, _ in cpu if x) if per_round else get(alone, "sut_cpu_us_per_event")
    median = statistics.median(per_round) if per_round else None
    added = (median - 1) * 100 if median is not None else None
    per_trigger = a * (median - 1) / (n_max - 1) if a is not None and median is not None else None
    out.summary = {
        "best_all_match_deliveries_per_s": get(best, "deliveries_per_s"),
        "best_all_match_triggers": best["triggers"] if best else None,
        "nonmatching_added_cpu_pct": added,
        "cpu_us_per_nonmatching_trigger": per_trigger,
    }
    bare1k = next((r for r in ctx.shared.get("S1.relay", []) if r["offered"] == p.latency_rate), None)
    out.baselines = {
        "Weir with 1 Trigger at the same rate, CPU µs/event": a if a is not None else "not measured",
        f"{rn} (bare relay: ingress, store, one POST) CPU µs/event in S1": get(bare1k, "sut_cpu_us_per_event")
        or "S1 not run",
    }
    cpu_ratio = f"CPU/event, {n_max:,} Triggers (1 matching) / 1 Trigger, median of {len(per_round)} rounds"
    out.ratios[cpu_ratio] = median
    out.checks += [
        at_least("S3 all-match fan-out", get(best, "deliveries_per_s"), DELIVERIES_TARGET, "deliveries/s"),
        at_most(f"S3 CPU added per event by {n_max - 1:,} non-matching Triggers", added, 5.0, "%"),
    ]
    out.body.append(table(out.records, COLUMNS))
    if saturated:
        out.notes.append(f"{rn} rows: the bare relay with --fanout N at each saturation step's offered rate, "
                         f"every event stored once and POSTed to all N sink paths (no filtering, no "
                         f"per-delivery progress): the deliveries/s this machine could relay in this run.")
    if per_trigger is not None:
        rounds = ", ".join(f"{(r - 1) * 100:+.1f}%" for r in per_round)
        cost = (f"each non-matching Trigger costs {per_trigger:.3f} µs of CPU per event "
                f"({n_max - 1:,} of them: {per_trigger * (n_max - 1):.0f} µs)" if per_trigger >= 0 else
                f"no measurable cost of non-matching Triggers ({n_max:,} Triggers used "
                f"{-per_trigger * (n_max - 1):.0f} µs less CPU per event than one: noise)")
        out.notes.append(f"CPU per event with {n_max:,} Triggers (1 matching) against 1 Trigger, by round "
                         f"(rows `fixed, round k`; round 1 is the `fixed` rows): {rounds}. From the median, "
                         f"{cost}.")
    return out
