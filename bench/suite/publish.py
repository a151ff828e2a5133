"""Publishes a results file: the latency plot and the sections of the results Markdown file.

The sections are rendered from the results file alone, so ``python -m bench --from-results FILE``
redraws the plot and rewrites the sections without measuring anything (e.g. once matplotlib is
installed). Every scenario in the file that carries its rendered body gets its section, stating the
command and date of the run that measured it; a summary section lists every target's verdict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.report import write_section
from bench.suite.checks import Check, Outcome
from bench.suite.plot import latency_plot
from bench.suite.procs import ROOT
from bench.suite.render import checks_table, section

SUMMARY_TITLE = "Issue 3: targets at a glance"


def setup_text(backend: str, machine: dict[str, Any]) -> str:
    """One paragraph on what was measured, where, and how."""
    pinning = (
        f"system under test pinned to core {machine['sut_core']}, generator, sink and suite on core "
        f"{machine['load_core']} (taskset)"
        if machine["pinned"]
        else "no pinning (taskset missing or one core)"
    )
    measured = machine.get("weir", "working tree")
    if "commit" in machine:
        measured += f" at {machine['commit'][:10]}"
    if machine.get("uncommitted_files"):
        measured += f" with {machine['uncommitted_files']} uncommitted file(s)"
    return (
        f"Weir measured: {measured}. "
        f"{machine['cpus']} × {machine['cpu_model'] or 'CPU'}, Linux {machine['kernel']}, Python "
        f"{machine['python']}; {pinning}; load average {' '.join(machine['loadavg'])} at the start. "
        f"Backend: {backend}. Load: open-loop aiohttp generator, 64 connections, binary-mode "
        "events with a unique id; latency = sink arrival − scheduled send (no coordinated omission)."
    )


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return os.path.relpath(path, ROOT) if path.resolve().is_relative_to(ROOT) else str(path)


def outcome_of(name: str, data: dict[str, Any]) -> Outcome:
    """A scenario's :class:`Outcome` back from its entry in a results file (records not included)."""
    return Outcome(
        scenario=name,
        title=data["title"],
        baselines=data["baselines"],
        ratios=data["ratios"],
        checks=[Check(**{k: v for k, v in c.items() if k != "verdict"}) for c in data["targets"]],
        summary=data["summary"],
        body=data.get("body", []),
        notes=data["notes"],
        profiles=data["profiles"],
    )


def publish(doc: dict[str, Any], results: Path, results_md: Path | None) -> bool:
    """Draw the plot beside ``results`` and, unless ``results_md`` is ``None``, write the sections.

    Returns whether the plot was drawn.
    """
    tag = "-quick" if doc.get("quick") else ""
    plot = results.parent / f"latency{tag}.png"
    drawn = latency_plot(doc["records"], plot, title=f"S1 latency, {doc['date']} ({doc['backend']} store)")
    if results_md is None:
        return drawn
    scenarios = {name: outcome_of(name, data) for name, data in doc["scenarios"].items()}
    checks = [c for o in scenarios.values() for c in o.checks]
    by_command: dict[str, list[str]] = {}
    for name, data in doc["scenarios"].items():
        by_command.setdefault(f"`{data.get('command', doc['command'])}` ({data.get('when', doc['date'])})",
                              []).append(name)
    measured = "; ".join(f"{', '.join(names)} by {command}" for command, names in by_command.items())
    lines = [
        f"Measured: {measured}. Each scenario's section below states its command, date and the Weir "
        f"commit. Results file: `{os.path.relpath(results, results_md.parent)}`. Targets are on the "
        "embedded store with 1 KB events.",
        checks_table(checks),
        "B3 (the bare relay on NATS JetStream) is not measured: Weir has no NATS store yet.",
    ]
    if drawn:
        rel = os.path.relpath(plot, results_md.parent)
        lines.append(f"![S1 latency percentiles against offered rate]({rel})")
    else:
        lines.append(
            f"No latency plot in this run: matplotlib (the `bench` extra) is not installed. After "
            f"`pip install -e '.[bench]'`, `python -m bench --from-results {_shown(results)}` draws "
            f"`{plot.name}` and links it here."
        )
    write_section(SUMMARY_TITLE, "\n\n".join(lines), results_md)
    for name, outcome in scenarios.items():
        data = doc["scenarios"][name]
        if "body" in data:
            text = section(outcome, command=data["command"], when=data["when"], setup=data["setup"])
            write_section(outcome.title, text, results_md)
    return drawn
