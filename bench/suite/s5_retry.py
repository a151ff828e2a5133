"""S5: retry isolation. 10 Triggers match every event; one of them fails.

Nine healthy Triggers deliver to ``/t/0`` … ``/t/8``. The tenth goes to ``/c/9`` (healthy: the
*control* run), to ``/fail/9`` (answers 503: ``retry: 3``, exponential, ``backoffDelay: PT0.2S``) or
to ``/hang/9`` (never answers: ``timeout: PT1S``, ``retry: 1``), with a dead-letter sink ``/dls/9``.
The healthy Triggers' p99 with a failing tenth is compared with the control run at the same rate
(the issue compares with S1's p99, which has one Trigger, not nine; that ratio is shown too). The
sink records every attempt at the failing path, so the gaps between attempts are checked against
the schedule: ``backoffDelay · 2^(k−1)`` before retry k (plus the timeout when the sink hangs).
"""

from __future__ import annotations

from typing import Any

from bench.suite.checks import Outcome, at_most, get, ratio
from bench.suite.context import Ctx
from bench.suite.render import STEP_COLUMNS, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import TriggerDoc, weir

TITLE = "S5: retry isolation (issue 3)"
HEALTHY = 9
BACKOFF = 0.2
TIMEOUT = 1.0
VARIANTS: dict[str, tuple[str, str, int, float]] = {
    # name: (path of the tenth Trigger, its delivery, attempts per event, wait added per retry)
    "control": ("/c/9", "", 1, 0.0),
    "503": ("/fail/9", f"retry: 3, backoffPolicy: exponential, backoffDelay: PT{BACKOFF}S", 4, 0.0),
    "hang": (
        "/hang/9",
        f"retry: 1, backoffPolicy: exponential, backoffDelay: PT{BACKOFF}S, timeout: PT{TIMEOUT:.0f}S",
        2,
        TIMEOUT,
    ),
}


def expected_gaps_ms(attempts: int, added: float) -> dict[str, float]:
    """Retry k waits ``BACKOFF · 2^(k−1)`` after attempt k ended (``added`` = time the attempt took)."""
    return {str(k): (BACKOFF * 2 ** (k - 1) + added) * 1e3 for k in range(1, attempts)}


def schedule_error(attempts: dict[str, Any], expected: dict[str, float]) -> float | None:
    """Worst relative distance of the median gap from the schedule (``None``: no retries seen)."""
    gaps = attempts.get("gap_ms", {})
    errors = [abs(gaps[k]["p50"] - want) / want for k, want in expected.items() if k in gaps]
    return max(errors) if errors and len(errors) == len(expected) else None


def _docs(ctx: Ctx, variant: str) -> list[TriggerDoc]:
    path, delivery, _, _ = VARIANTS[variant]
    if delivery:
        delivery = f"{{{delivery}, deadLetterSink: {{uri: '{ctx.sink}/dls/9'}}}}"
    docs = [TriggerDoc(name=f"h{k}", subscriber=f"{ctx.sink}/t/{k}") for k in range(HEALTHY)]
    return [*docs, TriggerDoc(name="x9", subscriber=f"{ctx.sink}{path}", delivery=delivery)]


async def _variant(ctx: Ctx, variant: str) -> dict[str, Any]:
    p = ctx.profile
    path = VARIANTS[variant][0]
    total = max(1, round(p.retry_rate * p.step_seconds))
    also = {"/c/": total} if variant == "control" else {"/dls/": total, path.rsplit("/", 1)[0] + "/": 0}
    async with weir(ctx, _docs(ctx, variant), name=f"s5-{variant}") as sut:
        await warm_up(ctx, sut.url, rate=min(p.warmup_rate, 100.0), matches=HEALTHY)
        step = Step(scenario="S5", target=f"weir {variant}", url=sut.url, pid=sut.pid, rate=p.retry_rate,
                    seconds=p.step_seconds, matches=HEALTHY, also=also, extra={"variant": variant})
        return await measure(ctx, step)


def _judge(out: Outcome, record: dict[str, Any], control: dict[str, Any], s1_p99: float | None) -> None:
    variant = record["variant"]
    path, _, attempts, added = VARIANTS[variant]
    failing = record.get("also", {}).get(path.rsplit("/", 1)[0] + "/", {}).get("attempts", {})
    dls = record.get("also", {}).get("/dls/", {})
    dead = int(dls.get("deliveries", 0))
    expected = expected_gaps_ms(attempts, added)
    error = schedule_error(failing, expected)
    record["retry"] = {"attempts": failing, "expected_gap_ms": expected, "worst_gap_error": error,
                       "dead_lettered": dead}
    record["rss_growth_mb"] = record["rss_mb"] - control["rss_mb"]
    against = ratio(record["p99"], control["p99"])
    out.ratios[f"healthy p99, {variant} / control"] = against
    out.ratios[f"healthy p99, {variant} / S1"] = ratio(record["p99"], s1_p99)
    out.checks.append(at_most(f"S5 ({variant}) healthy Triggers' p99 against the control", against, 1.2, "x"))
    off = None if error is None else error * 100
    out.checks.append(at_most(f"S5 ({variant}) retry gaps: worst median off the schedule", off, 10.0, "%"))
    if variant == "503":
        missing = float(record["accepted"] - dead)
        out.checks.append(at_most("S5 (503) events missing from the dead-letter sink", missing, 0, "events"))
    gaps = ", ".join(
        f"retry {k}: median {v['p50']:.0f} ms (min {v['min']:.0f}, schedule {expected.get(k, 0):.0f})"
        for k, v in failing.get("gap_ms", {}).items()
    )
    out.notes.append(
        f"{variant}: {failing.get('events', 0):,} events reached the failing sink; attempts per event "
        f"{failing.get('per_event', {})}; {gaps or 'no retries seen'}; {dead:,} of {record['accepted']:,} "
        f"dead-lettered by the end of the drain; RSS {record['rss_growth_mb']:+.1f} MB against the control."
    )


async def run(ctx: Ctx) -> Outcome:
    out = Outcome(scenario="S5", title=TITLE)
    rate = ctx.profile.retry_rate
    control = await _variant(ctx, "control")
    out.records.append(control)
    s1 = [r for r in ctx.shared.get("S1.records", []) if r["payload"] == 1024]
    s1_near = min(s1, key=lambda r: abs(r["offered"] - rate)) if s1 else None
    out.baselines = {
        f"control (10 healthy Triggers) healthy p99 at {rate:,.0f} ev/s (ms)": control["p99"],
        "S1 p99 at the nearest rate (ms)": get(s1_near, "p99") or "S1 not run",
    }
    for variant in ctx.profile.retry_variants:
        record = await _variant(ctx, variant)
        out.records.append(record)
        _judge(out, record, control, get(s1_near, "p99"))
    kept = ("p50", "p99", "loss", "dup", "rss_mb", "retry")
    out.summary = {r["variant"]: {k: r.get(k) for k in kept} for r in out.records}
    out.body.append(f"Healthy Triggers only ({HEALTHY} × {rate:,.0f} deliveries/s):\n\n"
                    + table(out.records, STEP_COLUMNS))
    return out
