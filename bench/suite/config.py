"""What a suite run does: the scenario knobs of a full and a ``--quick`` run, and where output goes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Backend = Literal["sqlite", "memory", "nats", "kafka"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "memory", "nats", "kafka")
SHARED: tuple[Backend, ...] = ("nats", "kafka")
"""Backends on a log server several Weir processes share; the suite starts its own for the run."""
SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
SHARED_SCENARIOS = ("S1", "S3", "S6", "S8")
"""What a shared backend measures. S2, S4, S5 and S7 measure Weir alone against the embedded
store's baselines; S8 (dispatcher replicas) needs a store several processes share."""
BENCH = Path(__file__).resolve().parents[1]


def scenarios_for(backend: Backend) -> tuple[str, ...]:
    """The scenarios ``--scenario all`` runs on ``backend``."""
    return SHARED_SCENARIOS if backend in SHARED else tuple(s for s in SCENARIOS if s != "S8")


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Durations (seconds), rates (events/s) and sizes of each scenario."""

    step_seconds: float
    """Length of one open-loop step (S1, S3, S5)."""
    warmup_seconds: float
    """Open-loop warm-up at :attr:`warmup_rate` before a target's first step (not reported)."""
    warmup_rate: float
    drain_seconds: float
    """Longest wait after a step for deliveries still under way."""
    rates: tuple[float, ...]
    """S1 rate steps; stepping stops at the first step that is not sustained."""
    latency_rate: float
    """S1's latency point (the issue's 1,000 ev/s), and the rate of the extra payload steps."""
    payloads: tuple[int, ...]
    """S1 payloads besides 1 KiB, measured at :attr:`latency_rate`."""
    soak_seconds: float
    soak_bucket: float
    """S2 p99 drift is the p99 of the last bucket of this many seconds against the first."""
    fanout_triggers: tuple[int, ...]
    fanout_shapes: tuple[str, ...]
    fanout_rate: float
    """S3 ingress rate of the fixed steps, lowered so deliveries stay within :attr:`fanout_budget`."""
    fanout_budget: float
    fanout_offered: float
    """Deliveries/s offered by the S3 all-match saturation step (above the 6,000 target)."""
    nonmatching_rounds: int
    """S3: rounds of the pair (1 Trigger; the most Triggers, 1 matching) whose median ratio of CPU
    per event is the cost of the Triggers that do not match."""
    trigger_counts: tuple[int, ...]
    idle_seconds: float
    """S4: seconds without events over which idle CPU is read; longer than any periodic work in
    Weir (5 s polls), or a burst of it may fall outside the window."""
    retry_rate: float
    """S5 events/s: each goes to 10 Triggers, so 10 × this must stay well within one core."""
    retry_variants: tuple[str, ...]
    retry_rounds: int
    """S5: each variant's step is run this many times, interleaved with the control's, so a
    change in the machine's speed during the scenario touches every variant alike."""
    wrk_seconds: int
    wrk_connections: tuple[int, ...]
    cold_repeats: int
    replica_events: int
    """S8: events pre-filled into the log before the dispatchers start, per replica count."""
    replica_counts: tuple[int, ...]
    profile_seconds: float
    """py-spy recording at a failing point; 0 turns profiling off."""


FULL = Profile(
    step_seconds=12.0,
    warmup_seconds=4.0,
    warmup_rate=200.0,
    drain_seconds=8.0,
    rates=(250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0),
    latency_rate=1000.0,
    payloads=(100, 8192),
    soak_seconds=300.0,
    soak_bucket=30.0,
    fanout_triggers=(1, 10, 100, 1000),
    fanout_shapes=("all", "one", "tenth"),
    fanout_rate=500.0,
    fanout_budget=2000.0,
    fanout_offered=8000.0,
    nonmatching_rounds=5,
    trigger_counts=(0, 1000, 10000),
    idle_seconds=10.0,
    retry_rate=60.0,
    retry_variants=("503", "hang"),
    retry_rounds=3,
    wrk_seconds=8,
    wrk_connections=(16, 64),
    cold_repeats=3,
    replica_events=60000,
    replica_counts=(1, 2),
    profile_seconds=8.0,
)

QUICK = Profile(
    step_seconds=2.0,
    warmup_seconds=0.5,
    warmup_rate=200.0,
    drain_seconds=3.0,
    rates=(1000.0,),
    latency_rate=1000.0,
    payloads=(),
    soak_seconds=20.0,
    soak_bucket=5.0,
    fanout_triggers=(1, 50),
    fanout_shapes=("all", "one"),
    fanout_rate=500.0,
    fanout_budget=2000.0,
    fanout_offered=8000.0,
    nonmatching_rounds=2,
    trigger_counts=(0, 500),
    idle_seconds=1.0,
    retry_rate=50.0,
    retry_variants=("503",),
    retry_rounds=1,
    wrk_seconds=2,
    wrk_connections=(64,),
    cold_repeats=1,
    replica_events=6000,
    replica_counts=(1, 2),
    profile_seconds=0.0,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteConfig:
    scenarios: tuple[str, ...]
    backend: Backend
    quick: bool
    profile: Profile
    out_dir: Path
    """Where the results file (named by :attr:`results_suffix`), the plot and the processes' logs go."""
    results_md: Path | None
    """The Markdown file whose sections are rewritten; ``None`` writes none."""
    command: str
    """The command line, as the results state it."""
    weir_ref: str | None = None
    """Measure Weir as of this git revision (exported) instead of the working tree."""
    from_results: Path | None = None
    """Measure nothing: publish this results file (plot and sections) again."""

    @property
    def tag(self) -> str:
        """Suffix of output names, so a quick run never overwrites a full run's files."""
        return "-quick" if self.quick else ""

    @property
    def results_suffix(self) -> str:
        """What follows the date in a results file's name: the SQLite runs keep the plain
        ``<date>.json``; every other backend adds its name, e.g. ``<date>-nats-quick.json``."""
        return ("" if self.backend == "sqlite" else f"-{self.backend}") + self.tag


def with_overrides(
    profile: Profile, *, rates: tuple[float, ...] | None, step_seconds: float | None
) -> Profile:
    """``profile`` with the command line's ``--rates`` / ``--step-seconds`` applied."""
    changes: dict[str, object] = {}
    if rates:
        changes["rates"] = rates
    if step_seconds:
        changes["step_seconds"] = step_seconds
    return dataclasses.replace(profile, **changes)  # type: ignore[arg-type]
