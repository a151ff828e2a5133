"""Writes one section of ``bench/RESULTS.md``, leaving the other sections as they are."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Each section is rewritten by the command it names; ratios compare against baselines measured in the\n"
    "same run on the same machine, because absolute rates drift on shared 2-core machines.\n"
)


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## title`` section of the results file with ``body``."""
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def report_cli(title: str, make: Callable[[], str], doc: str | None) -> None:
    """Entry point of an in-process benchmark: print its table; ``--write`` also records it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--write", action="store_true", help="record the table in bench/RESULTS.md")
    text = make()
    if parser.parse_args().write:
        write_section(title, text)
    print(text)
