"""Smoke test of the benchmark suite on a shared backend: ``--backend nats --quick --scenario S1,S8``.

The suite starts its own nats-server for the run (never the machine's own on port 4222), runs
S1 (Weir against B1 and the bare JetStream relay B3) and S8 (one and two dispatcher replicas
draining a pre-filled log), and writes the results file and sections titled with the backend.
It asserts nothing about speed. Deselect with ``-m "not bench"``. The steady window S8 reads
its rate over is checked on its own, table-driven.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import runner
from bench.suite.s8_replicas import busy_since, window

ROOT = Path(__file__).resolve().parents[1]
ARRIVALS = [i / 100 for i in range(100)]
"""100 deliveries, one every 10 ms from t = 0."""


@pytest.mark.parametrize(
    ("busy", "expected"),
    [
        ([0.05], (10, 90)),  # busy before the 10% mark: 10%..90%
        ([0.05, None], (10, 90)),  # a replica never busy: the plain window, said so
        ([0.05, 0.305], (31, 90)),  # the second replica busy at 31%: the window starts there
        ([0.05, 0.75], (10, 90)),  # busy only at 75%: too little left, the plain window
    ],
)
def test_s8_window_starts_once_every_dispatcher_is_busy(
    busy: list[float | None], expected: tuple[int, int]
) -> None:
    lo, hi, why = window(ARRIVALS, 100, busy)
    assert (lo, hi) == expected
    assert ("never" in why) == (None in busy)


def test_s8_busy_since_is_the_first_reading_with_enough_cpu_over_half_a_second() -> None:
    # Idle for a second, then a full core from t = 1.0.
    samples = [(t / 10, max(0.0, t / 10 - 1.0)) for t in range(31)]
    assert busy_since(samples) == pytest.approx(1.2)  # 0.2 s of CPU over 0.5 s = 0.4 >= 0.3
    assert busy_since([(t / 10, 0.0) for t in range(31)]) is None


@pytest.mark.bench
def test_quick_suite_on_nats_measures_b3_and_replicas(tmp_path: Path) -> None:
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\n## S1: sustained throughput, 1 Trigger (issue 3)\n\nkept\n")
    cmd = [
        sys.executable, "-m", "bench", "--quick", "--backend", "nats", "--scenario", "S1,S8",
        "--rates", "200", "--step-seconds", "1", "--out-dir", str(tmp_path), "--results-md", str(results_md),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    [path] = tmp_path.glob("*-nats-quick.json")
    doc = json.loads(path.read_text())
    assert doc["backend"] == "nats" and "nats-server" in doc["machine"]["log_server"]
    for name in ("S1", "S8"):
        assert "error" not in doc["scenarios"][name]["summary"], doc["scenarios"][name]
    s1 = [r for r in doc["records"] if r["scenario"] == "S1"]
    assert {r["target"] for r in s1} == {"B1", "B3", "weir"}
    assert all(r["sent"] == 200 and r["loss"] == 0 for r in s1)
    s8 = {r["replicas"]: r for r in doc["records"] if r["scenario"] == "S8"}
    assert set(s8) == {1, 2}
    for record in s8.values():
        assert record["delivered"] == record["events"] > 0
        assert record["rate"] > 0 and record["cpu_dispatcher_1"] > 0
    assert s8[2]["cpu_dispatcher_2"] > 0

    text = results_md.read_text()
    for title in ("## S1: sustained throughput, 1 Trigger (issue 3) — NATS JetStream",
                  "## S8: dispatcher replicas — NATS JetStream"):
        assert title in text
    # The SQLite section of the same title stays as it was.
    assert "## S1: sustained throughput, 1 Trigger (issue 3)\n\nkept\n" in text


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        ("2026-12-06.json", "2026-12-05.json"),  # the embedded store's files have no suffix
        ("2026-12-06-kafka.json", "2026-12-04-kafka.json"),
        ("2026-12-06-nats.json", None),  # no earlier NATS file
        ("2026-12-04-kafka.json", None),  # nothing before the first one
    ],
)
def test_a_days_first_results_carry_over_from_the_newest_earlier_file_of_its_kind(
    tmp_path: Path, new: str, expected: str | None
) -> None:
    for name in ("2026-12-03.json", "2026-12-05.json", "2026-12-04-kafka.json", "2026-12-05-quick.json",
                 "2026-12-07.json"):
        (tmp_path / name).write_text("{}")
    found = runner._previous(tmp_path / new)
    assert (found.name if found is not None else None) == expected
