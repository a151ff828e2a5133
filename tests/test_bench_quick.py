"""Smoke test of the benchmark suite: it runs end to end and writes records and a results file.

It asserts nothing about speed (CI machines are too noisy for that). Everything goes to a temporary
directory, never to the committed ``bench/RESULTS.md``. Deselect with ``-m "not bench"``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {
    "scenario", "target", "backend", "payload", "offered", "achieved", "loss", "dup",
    "p50", "p99", "p999", "max", "sut_cpu_us_per_event", "rss_mb",
}


def test_quick_suite_writes_records_and_sections(tmp_path: Path) -> None:
    results_md = tmp_path / "RESULTS.md"
    cmd = [
        sys.executable, "-m", "bench", "--quick", "--scenario", "S1,S7", "--backend", "memory",
        "--rates", "200", "--step-seconds", "1", "--out-dir", str(tmp_path), "--results-md", str(results_md),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    [path] = tmp_path.glob("*-quick.json")
    doc = json.loads(path.read_text())
    assert doc["backend"] == "memory" and doc["quick"] is True
    for name in ("S1", "S7"):
        assert "error" not in doc["scenarios"][name]["summary"], doc["scenarios"][name]
    s1 = [r for r in doc["records"] if r["scenario"] == "S1"]
    assert {r["target"] for r in s1} == {"B1", "B2", "weir"}
    for record in s1:
        assert RECORD_KEYS <= record.keys()
        assert record["sent"] == 200 and record["offered"] == 200
    assert any(r["scenario"] == "S7" and r["target"] == "weir" for r in doc["records"])

    text = results_md.read_text()
    for title in ("## Issue 3: targets at a glance", "## S1: sustained throughput", "## S7: cold start"):
        assert title in text
    assert "Command: `python -m bench --quick" in text
