"""Publishes a results file: the latency plot and the sections of the results Markdown file.

The sections are rendered from the results file alone, so ``python -m bench --from-results FILE``
redraws the plot and rewrites the sections without measuring anything (e.g. once matplotlib is
installed). Every scenario in the file that carries its rendered body gets its section, stating the
command and date of the run that measured it; a summary section lists every target's verdict.
On a shared backend every title ends with the backend's name (e.g. "— NATS JetStream"), so its
sections sit beside the SQLite ones instead of replacing them.
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
LABELS = {"nats": "NATS JetStream", "kafka": "Kafka"}


def titled(title: str, backend: str) -> str:
    """A section title as the results file of ``backend`` uses it."""
    return f"{title} — {LABELS[backend]}" if backend in LABELS else title


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
        + _log_server(machine)
    )


def _log_server(machine: dict[str, Any]) -> str:
    if "log_server" not in machine:
        return ""
    return (f" Log server: {machine['log_server']}, started by the suite for the run, on core "
            f"{machine['load_core']} with the generator and sink; Weir and the bare relay use fresh "
            "stream/topic names at every start.")


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
    backend = doc["backend"]
    suffix = results.stem[len(doc["date"]):] if results.stem.startswith(doc["date"]) else ""
    plot = results.parent / f"latency{suffix}.png"
    drawn = latency_plot(doc["records"], plot, title=f"S1 latency, {doc['date']} ({backend} store)")
    if results_md is None:
        return drawn
    scenarios = {name: outcome_of(name, data) for name, data in doc["scenarios"].items()}
    checks = [c for o in scenarios.values() for c in o.checks]
    by_command: dict[str, list[str]] = {}
    for name, data in doc["scenarios"].items():
        by_command.setdefault(f"`{data.get('command', doc['command'])}` ({data.get('when', doc['date'])})",
                              []).append(name)
    measured = "; ".join(f"{', '.join(names)} by {command}" for command, names in by_command.items())
    if backend in LABELS:
        where = (f"on {LABELS[backend]} ({doc['machine'].get('log_server', 'log server')}) with 1 KB "
                 f"events; B3 is the bare relay on the same server, measured in the same run")
        baseline = ("S2, S4, S5 and S7 are measured on the embedded store only (the sections without "
                    "a backend in their title).")
    else:
        where = "on the embedded store with 1 KB events"
        baseline = ("B3 (the bare relay on NATS JetStream or Kafka) and S8 (dispatcher replicas) are "
                    "measured by `python -m bench --backend nats` and `--backend kafka`, in the sections "
                    "titled with those backends.")
    lines = [
        f"Measured: {measured}. Each scenario's section below states its command, date and the Weir "
        f"commit. Results file: `{os.path.relpath(results, results_md.parent)}`. Targets are {where}.",
        checks_table(checks),
        baseline,
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
    write_section(titled(SUMMARY_TITLE, backend), "\n\n".join(lines), results_md)
    for name, outcome in scenarios.items():
        data = doc["scenarios"][name]
        if "body" in data:
            text = section(outcome, command=data["command"], when=data["when"], setup=data["setup"])
            write_section(titled(outcome.title, backend), text, results_md)
    return drawn
