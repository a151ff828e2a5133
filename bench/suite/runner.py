"""Runs the chosen scenarios and writes what they found.

Outputs (``TAG`` is ``-quick`` for ``--quick`` runs, so they never replace a full run's files):

* ``OUT/<date>SUFFIX.json`` (``SUFFIX``: ``-<backend>`` unless SQLite, then ``TAG``, see
  :attr:`~bench.suite.config.SuiteConfig.results_suffix`):
  ``{date, command, backend, quick, machine, profile, records, scenarios}``;
  ``records`` holds one record per (scenario, target, rate) (see :mod:`bench.suite.step`),
  ``scenarios`` the baselines, ratios, target checks and profiles of each scenario. Scenarios run
  again on the same date replace their earlier records; the others are kept.
* ``OUT/latencySUFFIX.png`` and the results Markdown sections: see :mod:`bench.suite.publish`.
* ``OUT/logs TAG/``: every process's stdout and stderr, and py-spy's raw profiles.

On a shared backend (``nats``, ``kafka``) the run starts its own log server first (see
:mod:`bench.suite.logserver`) and stops it last.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

from bench.suite.checks import Outcome
from bench.suite.config import SHARED, SuiteConfig, scenarios_for
from bench.suite.context import Ctx
from bench.suite.logserver import LogServer, serving
from bench.suite.machine import describe
from bench.suite.procs import LOAD_CPU, free_port, pin_self, pinned, running
from bench.suite.publish import publish, setup_text
from bench.suite.source import describe_tree, export

MODULES: dict[str, str] = {
    "S1": "s1_throughput",
    "S2": "s2_soak",
    "S3": "s3_fanout",
    "S4": "s4_triggers",
    "S5": "s5_retry",
    "S6": "s6_ingress",
    "S7": "s7_coldstart",
    "S8": "s8_replicas",
}
"""Each scenario module has ``TITLE`` (its results section) and ``async def run(ctx) -> Outcome``."""


async def _scenario(ctx: Ctx, name: str) -> Outcome:
    module: ModuleType = importlib.import_module(f"bench.suite.{MODULES[name]}")
    started = time.monotonic()
    if name not in scenarios_for(ctx.config.backend):
        where = ", ".join(b for b in ("sqlite", "memory", *SHARED) if name in scenarios_for(b))
        skipped = Outcome(scenario=name, title=module.TITLE,
                          notes=[f"Not measured on this backend ({ctx.config.backend}): it runs on {where}."])
        skipped.summary["not_measured"] = ctx.config.backend
        return skipped
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        outcome: Outcome = await module.run(ctx)
    except Exception as exc:  # one broken scenario must not lose the others' results
        traceback.print_exc()
        outcome = Outcome(scenario=name, title=module.TITLE, notes=[f"The scenario failed: `{exc!r}`."])
        outcome.summary["error"] = repr(exc)
    outcome.summary["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"bench: {name} done in {outcome.summary['wall_seconds']}s", file=sys.stderr, flush=True)
    return outcome


async def run_suite(config: SuiteConfig) -> Path:
    """Run ``config.scenarios``; returns the results file written."""
    pin_self(LOAD_CPU)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    machine = describe()
    started = datetime.now(UTC)
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
        port = free_port()
        sink_cmd = pinned(LOAD_CPU, [sys.executable, "-m", "bench.suite.sink", "--port", str(port)])
        logs = config.out_dir / f"logs{config.tag}"
        sink_url = f"http://127.0.0.1:{port}"
        if config.weir_ref:
            machine |= export(config.weir_ref, Path(tmp) / "weir-src")
        else:
            machine |= describe_tree()
        async with contextlib.AsyncExitStack() as stack:
            log_server: LogServer | None = None
            if config.backend in SHARED:
                scratch = Path(tmp) / "logserver"
                scratch.mkdir()
                log_server = await stack.enter_async_context(serving(config.backend, scratch, logs))
                machine["log_server"] = log_server.version
            await stack.enter_async_context(running(sink_cmd, logs, "sink", sink_url + "/"))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            src = Path(machine["source"]) if "source" in machine else None
            ctx = Ctx(config=config, work=Path(tmp), sink=sink_url, session=session, weir_src=src,
                      log_server=log_server)
            for name in config.scenarios:
                outcomes[name] = await _scenario(ctx, name)
            if log_server is not None:
                machine["log_server_rss_mb_end"] = round(log_server.proc.usage().rss_mb, 1)
    machine["loadavg_end"] = describe()["loadavg"]
    path = config.out_dir / f"{started:%Y-%m-%d}{config.results_suffix}.json"
    doc = _merge(path, config, machine, started, outcomes)
    path.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    publish(doc, path, config.results_md)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _previous(path: Path) -> Path | None:
    """The newest results file of the same kind (same suffix) dated before ``path``'s: a day's
    first run carries the other scenarios over from it, each with its own command and date, so
    the summary always shows the newest measurement of every scenario."""
    suffix = path.name[len("YYYY-MM-DD"):]
    found = sorted(p for p in path.parent.glob(f"????-??-??{suffix}")
                   if p.name[len("YYYY-MM-DD"):] == suffix and p.name < path.name)
    return found[-1] if found else None


def _merge(
    path: Path, config: SuiteConfig, machine: dict[str, Any], started: datetime, outcomes: dict[str, Outcome]
) -> dict[str, Any]:
    source = path if path.exists() else _previous(path)
    old: dict[str, Any] = json.loads(source.read_text()) if source is not None else {}
    if old.get("backend") != config.backend:
        old = {}
    kept = [r for r in old.get("records", []) if r["scenario"].split("-")[0] not in outcomes]
    scenarios = dict(old.get("scenarios", {}))
    stamp = {
        "command": config.command,
        "when": f"{started:%Y-%m-%d %H:%M} UTC",
        "setup": setup_text(config.backend, machine),
    }
    for name, outcome in outcomes.items():
        scenarios[name] = outcome.as_dict() | stamp
    return {
        "date": f"{started:%Y-%m-%d}",
        "generated": started.isoformat(),
        "command": config.command,
        "backend": config.backend,
        "quick": config.quick,
        "machine": machine,
        "profile": asdict(config.profile),
        "records": kept + [r for o in outcomes.values() for r in o.records],
        "scenarios": dict(sorted(scenarios.items())),
    }
