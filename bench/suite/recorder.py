"""What the benchmark sink remembers about each delivery, and the statistics drawn from it.

Every event carries a unique ``ce-id`` of the form ``<run>-<index>`` and its scheduled send time
in the ``benchsent`` extension (float seconds, ``time.time()`` clock). A *delivery* is one
successful POST of an event to one sink path; the first delivery of ``(path, index)`` counts, any
later one is a duplicate. Latency is arrival − scheduled send, so time the generator spent behind
its schedule is part of it (no coordinated omission).

Requests the sink refuses on purpose (``/fail/...`` answers 503, ``/hang/...`` never answers) are
*attempts*, kept per ``(path, index)`` with their arrival times, so the retry schedule can be checked.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; ``nan`` when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9/max/mean in milliseconds of latencies given in seconds."""
    ordered = sorted(values_s)
    if not ordered:
        return {"p50": math.nan, "p99": math.nan, "p999": math.nan, "max": math.nan, "mean": math.nan}
    return {
        "p50": percentile(ordered, 50) * 1e3,
        "p99": percentile(ordered, 99) * 1e3,
        "p999": percentile(ordered, 99.9) * 1e3,
        "max": ordered[-1] * 1e3,
        "mean": sum(ordered) / len(ordered) * 1e3,
    }


@dataclass(slots=True)
class RunLog:
    """Deliveries and attempts of one run (one generator step)."""

    paths: list[str] = field(default_factory=list)
    path_ids: dict[str, int] = field(default_factory=dict)
    seen: list[bytearray] = field(default_factory=list)
    path_of: array[int] = field(default_factory=lambda: array("I"))
    index: array[int] = field(default_factory=lambda: array("q"))
    sent: array[float] = field(default_factory=lambda: array("d"))
    arrival: array[float] = field(default_factory=lambda: array("d"))
    dup: int = 0
    attempts: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def delivery(self, path: str, idx: int, sent: float, arrival: float) -> None:
        pid = self.path_ids.get(path)
        if pid is None:
            pid = self.path_ids[path] = len(self.paths)
            self.paths.append(path)
            self.seen.append(bytearray())
        seen = self.seen[pid]
        if idx >= len(seen):
            seen.extend(bytes(idx + 1024 - len(seen)))
        if seen[idx]:
            self.dup += 1
            return
        seen[idx] = 1
        self.path_of.append(pid)
        self.index.append(idx)
        self.sent.append(sent)
        self.arrival.append(arrival)

    def attempt(self, path: str, idx: int, arrival: float) -> None:
        self.attempts.setdefault((path, idx), []).append(arrival)

    def stats(
        self, *, prefix: str = "", until: float | None = None, bucket: float | None = None
    ) -> dict[str, Any]:
        """Statistics over deliveries to paths starting with ``prefix``.

        ``until``: also count first deliveries that arrived at or before this time (``in_window``).
        ``bucket``: also give p50/p99 per ``bucket`` seconds of scheduled send time.
        """
        chosen = {pid for pid, p in enumerate(self.paths) if p.startswith(prefix)}
        rows = [i for i in range(len(self.sent)) if self.path_of[i] in chosen]
        latencies = [self.arrival[i] - self.sent[i] for i in rows]
        last: dict[int, float] = {}
        for i, lat in zip(rows, latencies, strict=True):
            idx = self.index[i]
            if lat > last.get(idx, -math.inf):
                last[idx] = lat
        result: dict[str, Any] = {
            "deliveries": len(rows),
            "events": len(last),
            "paths": len(chosen),
            "dup": self.dup,
            "latency_ms": summary_ms(latencies),
            "last_ms": summary_ms(list(last.values())),
            "first_arrival": min((self.arrival[i] for i in rows), default=None),
            "last_arrival": max((self.arrival[i] for i in rows), default=None),
        }
        if until is not None:
            result["in_window"] = sum(1 for i in rows if self.arrival[i] <= until)
        if bucket and rows:
            start = min(self.sent[i] for i in rows)
            groups: dict[int, list[float]] = {}
            for i, lat in zip(rows, latencies, strict=True):
                groups.setdefault(int((self.sent[i] - start) // bucket), []).append(lat)
            result["buckets"] = [
                {"t": k * bucket, "n": len(v), **_pick(summary_ms(v), "p50", "p99")}
                for k, v in sorted(groups.items())
            ]
        result["attempts"] = self._attempt_stats(prefix)
        return result

    def _attempt_stats(self, prefix: str) -> dict[str, Any]:
        """Attempts per event and the gaps between consecutive attempts (``k`` = retry number)."""
        per_event: dict[int, int] = {}
        gaps: dict[int, list[float]] = {}
        for (path, _), times in self.attempts.items():
            if not path.startswith(prefix):
                continue
            per_event[len(times)] = per_event.get(len(times), 0) + 1
            ordered = sorted(times)
            for k in range(1, len(ordered)):
                gaps.setdefault(k, []).append(ordered[k] - ordered[k - 1])
        return {
            "events": sum(per_event.values()),
            "per_event": {str(k): v for k, v in sorted(per_event.items())},
            "gap_ms": {
                str(k): _pick(summary_ms(v), "p50", "max") | {"min": min(v) * 1e3}
                for k, v in sorted(gaps.items())
            },
        }


def _pick(values: dict[str, float], *keys: str) -> dict[str, float]:
    return {k: values[k] for k in keys}


class Recorder:
    """All runs the sink has seen, by run name."""

    def __init__(self) -> None:
        self.runs: dict[str, RunLog] = {}

    def run(self, name: str) -> RunLog:
        log = self.runs.get(name)
        if log is None:
            log = self.runs[name] = RunLog()
        return log

    def drop(self, name: str) -> None:
        self.runs.pop(name, None)


def split_id(event_id: str) -> tuple[str, int] | None:
    """``"<run>-<index>"`` → ``(run, index)``; ``None`` for ids not made by the generator."""
    run, sep, idx = event_id.rpartition("-")
    if not sep or not idx.isdigit():
        return None
    return run, int(idx)
