"""The latency plot: p50 / p99 / p99.9 against offered rate for each S1 target (1 KB events).

``python -m bench.suite.plot RESULTS.json OUT.png`` redraws it from a results file. matplotlib (the
``bench`` extra) draws it with the Agg backend; without matplotlib no plot is written.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

STYLES = {"p50": ":", "p99": "-", "p999": "--"}
COLOURS = {"weir": "tab:blue", "B2": "tab:orange", "B3": "tab:red", "B1": "tab:green"}


def _matplotlib() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend, or ``None`` when matplotlib is not installed.

    Imported by name so that type checking works with and without the ``bench`` extra.
    """
    try:
        importlib.import_module("matplotlib").use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None


def latency_plot(records: list[dict[str, Any]], path: Path, *, title: str) -> bool:
    """Draw S1's 1 KB rate steps into ``path``; ``False`` (and no file) without matplotlib or data."""
    plt = _matplotlib()
    if plt is None:
        return False
    steps = [r for r in records if r["scenario"] == "S1" and r["payload"] == 1024]
    if not steps:
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for target in COLOURS:
        mine = sorted((r for r in steps if r["target"] == target), key=lambda r: r["offered"])
        if not mine:
            continue
        for q, style in STYLES.items():
            points = [(r["offered"], r[q]) for r in mine if r.get(q) is not None and r[q] == r[q]]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=COLOURS[target], label=f"{target} {q}")
    ax.set_yscale("log")
    ax.axhline(100, color="grey", linewidth=0.8)
    ax.axhline(10, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("offered rate (events/s, open loop)")
    ax.set_ylabel("latency, scheduled send → sink (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=3, fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="Redraw the latency plot from a results file.")
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    doc = json.loads(args.results.read_text())
    if not latency_plot(doc["records"], args.out, title=f"S1 latency, {doc['date']} ({doc['backend']})"):
        raise SystemExit("no plot: matplotlib is not installed or the file has no S1 records")


if __name__ == "__main__":
    main()
