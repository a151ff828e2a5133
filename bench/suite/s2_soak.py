"""S2: soak at 80% of S1's maximum sustained rate (5 minutes; 20 s with ``--quick``).

Reported: loss and duplicates over the whole soak, p50/p99 per time bucket (drift = p99 of the last
full bucket over the first), and the RSS slope (least squares over readings taken through the soak,
after its first tenth) in MB per minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.suite.checks import Outcome, at_most, get, ratio
from bench.suite.context import Ctx
from bench.suite.procs import usage
from bench.suite.render import STEP_COLUMNS, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import fanout, weir

TITLE = "S2: soak at 80% of the S1 maximum (issue 3)"
FALLBACK_RATE = 500.0


def _s1_max(ctx: Ctx) -> tuple[float, str]:
    """S1's maximum from this run, else from today's results file, else :data:`FALLBACK_RATE`."""
    if "S1.max" in ctx.shared:
        return float(ctx.shared["S1.max"]), "S1 in this run"
    for path in ctx.results_files():
        doc = json.loads(path.read_text())
        found = doc.get("scenarios", {}).get("S1", {}).get("summary", {}).get("max_sustained", {}).get("weir")
        if found:
            return float(found), f"S1 in {path.name}"
    return FALLBACK_RATE / 0.8, "no S1 result: a default"


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MB)`` readings, in MB per minute."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(m for _, m in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mx) * (m - my) for t, m in samples) / var * 60


def drift(buckets: list[dict[str, Any]], bucket: float, rate: float) -> tuple[float | None, float | None]:
    """p99 of the first and of the last bucket holding at least half a bucket's events."""
    full = [b for b in buckets if b["n"] >= 0.5 * bucket * rate]
    if len(full) < 2:
        return None, None
    return full[0]["p99"], full[-1]["p99"]


async def run(ctx: Ctx) -> Outcome:
    p = ctx.profile
    out = Outcome(scenario="S2", title=TITLE)
    top, source = _s1_max(ctx)
    rate = max(50.0, round(0.8 * top / 10) * 10)
    samples: list[tuple[float, float]] = []
    async with weir(ctx, fanout(ctx.sink, 1, 1), name="s2-weir") as sut:
        assert sut.pid is not None
        pid = sut.pid
        await warm_up(ctx, sut.url)
        start = time.monotonic()
        stop = asyncio.Event()

        async def sample() -> None:
            interval = max(1.0, p.soak_seconds / 60)
            while not stop.is_set():
                samples.append((time.monotonic() - start, usage(pid).rss_mb))
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except TimeoutError:
                    pass

        sampler = asyncio.create_task(sample())
        step = Step(scenario="S2", target="weir", url=sut.url, pid=pid, rate=rate, seconds=p.soak_seconds,
                    bucket=p.soak_bucket)
        record = await measure(ctx, step)
        stop.set()
        await sampler
    settled = [(t, m) for t, m in samples if t >= p.soak_seconds / 10]
    slope = slope_mb_per_min(settled)
    first, last = drift(record.get("buckets", []), p.soak_bucket, rate)
    record["rss_slope_mb_per_min"] = slope
    record["p99_first_bucket"] = first
    record["p99_last_bucket"] = last
    record["rss_samples"] = [[round(t, 1), round(m, 2)] for t, m in samples]
    out.records.append(record)
    s1_near = _s1_p99_near(ctx, rate)
    out.summary = {
        "rate": rate,
        "rate_from": source,
        "seconds": p.soak_seconds,
        "loss": record["loss"],
        "dup": record["dup"],
        "p99_drift": ratio(last, first),
        "rss_slope_mb_per_min": slope,
        "rss_first_mb": samples[0][1] if samples else None,
        "rss_last_mb": samples[-1][1] if samples else None,
    }
    out.baselines = {"S1 p99 at the nearest S1 rate (ms)": s1_near if s1_near is not None else "not run"}
    out.ratios = {
        f"p99 last {p.soak_bucket:.0f} s / first {p.soak_bucket:.0f} s": ratio(last, first),
        "soak p99 / S1 p99 at the nearest rate": ratio(get(record, "p99"), s1_near),
    }
    out.checks = [
        at_most("S2 loss over the soak", float(record["loss"]), 0, "events"),
        at_most("S2 duplicates over the soak", float(record["dup"]), 0, "events"),
        at_most("S2 RSS slope", slope, 1.0, "MB/min"),
    ]
    out.body.append(
        f"{p.soak_seconds:.0f} s at {rate:,.0f} ev/s (80% of {top:,.0f} ev/s, the maximum sustained rate "
        f"from {source}), Weir with 1 Trigger, 1 KB events.\n\n" + table([record], STEP_COLUMNS)
    )
    buckets = record.get("buckets", [])
    if buckets:
        out.body.append(
            f"p99 per {p.soak_bucket:.0f} s of scheduled send time (ms): "
            + ", ".join(f"{b['p99']:.1f}" for b in buckets)
            + f". RSS from {samples[0][1]:.1f} MB to {samples[-1][1]:.1f} MB."
        )
    return out


def _s1_p99_near(ctx: Ctx, rate: float) -> float | None:
    records = [r for r in ctx.shared.get("S1.records", []) if r["payload"] == 1024]
    if not records:
        return None
    nearest = min(records, key=lambda r: abs(r["offered"] - rate))
    return get(nearest, "p99")
