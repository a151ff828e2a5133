"""S5: retry isolation. 10 Triggers match every event; one of them fails.

Nine healthy Triggers deliver to ``/t/0`` … ``/t/8``. The tenth goes to ``/c/9`` (healthy: the
*control* run), to ``/fail/9`` (answers 503: ``retry: 3``, exponential, ``backoffDelay: PT0.2S``) or
to ``/hang/9`` (never answers: ``timeout: PT1S``, ``retry: 1``), with a dead-letter sink ``/dls/9``.
The healthy Triggers' p99 with a failing tenth is compared with the control run at the same rate
(the issue compares with S1's p99, which has one Trigger, not nine; that ratio is shown too). Each
round also runs the bare relay (B2) POSTing every event to ten sink paths at the same rate, with no
failing sink: its p99 against S1's is what a fan-out of ten alone costs, with no Triggers, claims
or retries in the way. The sink records every attempt at the failing path, so the gaps between
attempts are checked against the schedule: ``backoffDelay · 2^(k−1)`` before retry k (plus the
timeout when the sink hangs).
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.suite.checks import Outcome, at_most, get, ratio
from bench.suite.context import Ctx
from bench.suite.render import STEP_COLUMNS, table
from bench.suite.step import Step, measure, warm_up
from bench.suite.targets import TriggerDoc, relay, relay_name, weir

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


async def _step(ctx: Ctx, variant: str, round_: int) -> dict[str, Any]:
    """One step of ``variant`` on a Weir of its own, stopped afterwards: a hanging sink leaves a
    backlog behind that would otherwise go on using the core during the next steps."""
    p = ctx.profile
    path = VARIANTS[variant][0]
    total = max(1, round(p.retry_rate * p.step_seconds))
    also = {"/c/": total} if variant == "control" else {"/dls/": total, path.rsplit("/", 1)[0] + "/": 0}
    async with weir(ctx, _docs(ctx, variant), name=f"s5-{variant}-{round_ + 1}") as sut:
        await warm_up(ctx, sut.url, rate=min(p.warmup_rate, 100.0), matches=HEALTHY)
        step = Step(scenario="S5", target=f"weir {variant}", url=sut.url, pid=sut.pid, rate=p.retry_rate,
                    seconds=p.step_seconds, matches=HEALTHY, also=also,
                    extra={"variant": variant, "round": round_ + 1})
        return await measure(ctx, step)


async def _relay_step(ctx: Ctx, round_: int) -> dict[str, Any]:
    """The bare relay POSTing every event to ``/t/0`` … ``/t/9`` at S5's rate (its p99 is over
    all ten deliveries)."""
    p = ctx.profile
    async with relay(ctx, "/t/{k}", fanout=HEALTHY + 1) as bare:
        await warm_up(ctx, bare.url, rate=min(p.warmup_rate, 100.0), matches=HEALTHY + 1)
        step = Step(scenario="S5", target=f"{bare.name} fan-out 10", url=bare.url, pid=bare.pid,
                    rate=p.retry_rate, seconds=p.step_seconds, matches=HEALTHY + 1,
                    extra={"variant": "relay", "round": round_ + 1})
        return await measure(ctx, step)


def _judge(out: Outcome, records: list[dict[str, Any]], controls: list[dict[str, Any]],
           s1_p99: float | None) -> None:
    """Checks of one failing variant from its rounds (``records``) and the control's (``controls``)."""
    variant = records[0]["variant"]
    path, _, attempts, added = VARIANTS[variant]
    expected = expected_gaps_ms(attempts, added)
    errors: list[float | None] = []
    missing = 0.0
    for record, control in zip(records, controls, strict=True):
        failing = record.get("also", {}).get(path.rsplit("/", 1)[0] + "/", {}).get("attempts", {})
        dead = int(record.get("also", {}).get("/dls/", {}).get("deliveries", 0))
        error = schedule_error(failing, expected)
        errors.append(error)
        missing += record["accepted"] - dead
        record["retry"] = {"attempts": failing, "expected_gap_ms": expected, "worst_gap_error": error,
                           "dead_lettered": dead}
        record["rss_growth_mb"] = record["rss_mb"] - control["rss_mb"]
        record["p99_vs_control"] = ratio(record["p99"], control["p99"])
        gaps = ", ".join(
            f"retry {k}: median {v['p50']:.0f} ms (min {v['min']:.0f}, schedule {expected.get(k, 0):.0f})"
            for k, v in failing.get("gap_ms", {}).items()
        )
        out.notes.append(
            f"{variant}, round {record['round']}: {failing.get('events', 0):,} events reached the failing "
            f"sink; attempts per event {failing.get('per_event', {})}; {gaps or 'no retries seen'}; "
            f"{dead:,} of {record['accepted']:,} dead-lettered by the end of the drain; healthy p99 "
            f"{record['p99']:.2f} ms against the control's {control['p99']:.2f} ms; RSS "
            f"{record['rss_growth_mb']:+.1f} MB against the control."
        )
    per_round = [r["p99_vs_control"] for r in records]
    against = statistics.median(x for x in per_round if x is not None) if None not in per_round else None
    out.ratios[f"healthy p99, {variant} / control (median of {len(records)} rounds)"] = against
    out.ratios[f"healthy p99, {variant} / S1"] = ratio(statistics.median(r["p99"] for r in records), s1_p99)
    out.checks.append(at_most(f"S5 ({variant}) healthy Triggers' p99 against the control", against, 1.2, "x"))
    worst = None if None in errors else max(e for e in errors if e is not None) * 100
    out.checks.append(at_most(f"S5 ({variant}) retry gaps: worst median off the schedule", worst, 10.0, "%"))
    if variant == "503":
        out.checks.append(at_most("S5 (503) events missing from the dead-letter sink", missing, 0, "events"))


async def run(ctx: Ctx) -> Outcome:
    out = Outcome(scenario="S5", title=TITLE)
    p = ctx.profile
    rate = p.retry_rate
    variants = ("control", *p.retry_variants)
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in (*variants, "relay")}
    for k in range(p.retry_rounds):
        for variant in variants:
            rounds[variant].append(await _step(ctx, variant, k))
        rounds["relay"].append(await _relay_step(ctx, k))
    controls, bare = rounds["control"], rounds["relay"]
    s1 = [r for r in ctx.shared.get("S1.records", []) if r["payload"] == 1024]
    s1_near = min(s1, key=lambda r: abs(r["offered"] - rate)) if s1 else None
    s1_p99 = get(s1_near, "p99")
    rn = relay_name(ctx)
    control_p99, bare_p99 = (statistics.median(r["p99"] for r in rs) for rs in (controls, bare))
    out.baselines = {
        f"control (10 healthy Triggers) healthy p99 at {rate:,.0f} ev/s, median of rounds (ms)": control_p99,
        f"{rn} fanning out to 10 sink paths at {rate:,.0f} ev/s, p99, median of rounds (ms)": bare_p99,
        "S1 p99 at the nearest rate (ms)": s1_p99 or "S1 not run",
    }
    for variant in p.retry_variants:
        _judge(out, rounds[variant], controls, s1_p99)
    out.ratios["healthy p99, control / S1"] = ratio(control_p99, s1_p99)
    out.ratios[f"p99, {rn} fan-out 10 / S1"] = ratio(bare_p99, s1_p99)
    out.records = [r for k in range(p.retry_rounds) for v in rounds for r in rounds[v][k : k + 1]]
    kept = ("round", "p50", "p99", "p99_vs_control", "loss", "dup", "rss_mb", "retry")
    out.summary = {v: [{k: r.get(k) for k in kept} for r in rounds[v]] for v in rounds}
    columns = (("round", "round", "d"), *STEP_COLUMNS[:8], ("p99 / control", "p99_vs_control", ".2f"),
               *STEP_COLUMNS[8:])
    out.body.append(f"Healthy Triggers only ({HEALTHY} × {rate:,.0f} deliveries/s; the {rn} rows: all ten "
                    f"paths), in rounds:\n\n" + table(out.records, columns))
    return out
