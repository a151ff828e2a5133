"""``python -m bench``: the benchmark suite (scenarios S1–S8 against baselines B1, B2, B3).

::

    python -m bench [--scenario all|S1,S3,...] [--backend sqlite|memory|nats|kafka] [--quick]
                    [--out-dir bench/results] [--results-md bench/RESULTS.md | --no-results-md]
                    [--rates 500,1000] [--step-seconds S] [--weir-ref HEAD]
    python -m bench --from-results bench/results/DATE.json [--results-md PATH]

A full run takes about 20 minutes; ``--quick`` under 2 minutes (a smoke test of the suite: its numbers
are too short to judge anything by, so by default it writes ``OUT/RESULTS-quick.md``, not the
committed results). ``--from-results`` measures nothing: it redraws the plot and rewrites the sections
from a results file. The kernel benchmark of issue 2 stays ``python -m bench.core``.

``--backend nats`` and ``--backend kafka`` start their own log server for the run (nats-server with
JetStream, or tansu) and measure S1, S3, S6 against the bare relay B3 on the same server, and S8
(dispatcher replicas); ``all`` means those four there. A full run on them takes about 15 minutes,
``--quick`` about one.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import uvloop

from bench.suite.config import (
    BACKENDS,
    BENCH,
    FULL,
    QUICK,
    SCENARIOS,
    SHARED,
    SuiteConfig,
    scenarios_for,
    with_overrides,
)
from bench.suite.publish import publish
from bench.suite.runner import run_suite


def _scenarios(text: str) -> tuple[str, ...]:
    if text.lower() == "all":
        return ("all",)
    names = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"scenarios are {', '.join(SCENARIOS)} or all, not {text!r}")
    return names


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates wants numbers separated by commas, not {text!r}") from None


def parse(argv: list[str]) -> SuiteConfig:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", type=_scenarios, default=("all",), help="S1..S8, comma-separated, or all"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--quick", action="store_true", help="short smoke run (under 2 minutes)")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--results-md", type=Path, default=None, help="default: bench/RESULTS.md")
    parser.add_argument("--no-results-md", action="store_true")
    parser.add_argument("--rates", type=_rates, default=None, help="S1 rate steps, e.g. 500,1000")
    parser.add_argument("--step-seconds", type=float, default=None)
    parser.add_argument(
        "--weir-ref", default=None, help="measure Weir at this git revision (e.g. HEAD), not the working tree"
    )
    parser.add_argument("--from-results", type=Path, default=None, help="only publish this results file")
    args = parser.parse_args(argv)
    scenarios = scenarios_for(args.backend) if args.scenario == ("all",) else args.scenario
    if "S8" in scenarios and args.backend not in SHARED:
        parser.error(f"S8 (dispatcher replicas) needs a shared store: --backend {' or '.join(SHARED)}")
    profile = with_overrides(QUICK if args.quick else FULL, rates=args.rates, step_seconds=args.step_seconds)
    if args.no_results_md:
        results_md = None
    elif args.results_md is not None:
        results_md = args.results_md
    else:
        results_md = args.out_dir / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md"
    return SuiteConfig(
        scenarios=scenarios,
        backend=args.backend,
        quick=args.quick,
        profile=profile,
        out_dir=args.out_dir,
        results_md=results_md,
        command=shlex.join(["python", "-m", "bench", *argv]),
        weir_ref=args.weir_ref,
        from_results=args.from_results,
    )


def main(argv: list[str] | None = None) -> None:
    config = parse(sys.argv[1:] if argv is None else argv)
    if config.from_results is not None:
        publish(json.loads(config.from_results.read_text()), config.from_results, config.results_md)
        print(f"published {config.from_results}" + (f" in {config.results_md}" if config.results_md else ""))
        return
    path = uvloop.run(run_suite(config))
    print(f"results: {path}" + (f"; sections in {config.results_md}" if config.results_md else ""))


if __name__ == "__main__":
    main()
