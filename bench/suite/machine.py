"""Readings of the whole machine: per-core busy time, steal, load average, and what it is."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.suite.procs import LOAD_CPU, SUT_CPU, can_pin


@dataclass(frozen=True, slots=True)
class CoreTimes:
    """Jiffies per core from ``/proc/stat``: busy (not idle, not iowait) and steal."""

    busy: dict[int, int]
    total: dict[int, int]
    steal: dict[int, int]


def core_times() -> CoreTimes:
    busy: dict[int, int] = {}
    total: dict[int, int] = {}
    steal: dict[int, int] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        ticks = [int(v) for v in values[:8]]
        total[cpu] = sum(ticks)
        busy[cpu] = total[cpu] - ticks[3] - ticks[4]
        steal[cpu] = ticks[7]
    return CoreTimes(busy=busy, total=total, steal=steal)


def busy_between(before: CoreTimes, after: CoreTimes) -> dict[str, float]:
    """Busy and steal fractions of the SUT core and the load core between two readings."""
    out: dict[str, float] = {}
    for label, cpu in (("sut", SUT_CPU), ("load", LOAD_CPU)):
        span = after.total.get(cpu, 0) - before.total.get(cpu, 0)
        if span <= 0:
            continue
        out[f"{label}_core_busy"] = (after.busy[cpu] - before.busy[cpu]) / span
        out[f"{label}_core_steal"] = (after.steal[cpu] - before.steal[cpu]) / span
    return out


def describe() -> dict[str, Any]:
    """What the results were measured on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "pinned": can_pin(),
        "sut_core": SUT_CPU,
        "load_core": LOAD_CPU,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
