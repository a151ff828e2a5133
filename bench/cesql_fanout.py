"""CESQL filters against equivalent exact/prefix filters in fan-out, end to end and in the router.

``python -m bench.cesql_fanout [--triggers 100] [--seconds 8]`` measures, with the same harness and
pinning as ``bench.core``:

* deliveries/s of Weir with N Triggers that all match, each filtering with
  ``cesql: "type LIKE 'com.example.%' AND source = '/orders' AND EXISTS subject"``, and the same with
  ``prefix: {type: com.example.}`` + ``exact: {source: /orders}`` + legacy-style presence of ``subject``
  (written as ``filter.attributes``: ``{source: /orders, subject: ""}`` plus the prefix in ``filters``
  would be overridden, so the exact/prefix side uses ``filters`` with ``prefix`` and ``exact`` only);
* µs per event spent by the Trigger index choosing Triggers (matching and non-matching events).

The issue's bar: a CESQL Trigger costs no more than 1.5x an exact/prefix Trigger in fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

from bench.core import LOAD_CPU, free_port, process, server, sink_count, weir
from bench.report import write_section
from bench.timing import per_call_us
from broker.event import Event
from triggers.filters import compile_trigger_filter
from triggers.index import TriggerIndex

CESQL = "type LIKE 'com.example.%' AND source = '/orders' AND EXISTS subject"
FILTERS: dict[str, list[dict[str, Any]]] = {
    "cesql": [{"cesql": CESQL}],
    "exact/prefix": [{"prefix": {"type": "com.example."}}, {"exact": {"source": "/orders"}}],
}


def manifests(folder: Path, sink: str, dialect: str, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docs = ["apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"]
    filters = "\n".join("    - " + json.dumps(element) for element in FILTERS[dialect])  # JSON is YAML
    for i in range(n):
        docs.append(
            f"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t{i}}}\n"
            f"spec:\n  broker: default\n  filters:\n{filters}\n  subscriber: {{uri: '{sink}'}}\n"
        )
    (folder / "fanout.yaml").write_text("---\n".join(docs))
    return folder


async def _post(url: str, seconds: float, concurrency: int) -> float:
    """Closed-loop poster of events every Trigger matches; returns the seconds it ran."""
    deadline = time.monotonic() + seconds
    body = b"x" * 1024

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"{n}-{i}",
                "ce-source": "/orders",
                "ce-type": "com.example.order",
                "ce-subject": "o-1",
                "content-type": "text/plain",
            }
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, n) for n in range(concurrency)))
    return time.monotonic() - start


def delivered(url: str, sink: str, seconds: float) -> float:
    asyncio.run(_post(url, 2, 4))  # warm-up
    before = sink_count(sink)
    took = asyncio.run(_post(url, seconds, 4))
    return (sink_count(sink) - before) / took


def router_cost(n: int) -> dict[str, float]:
    """Best-of-several µs per event for ``TriggerIndex.match`` with ``n`` Triggers of each dialect."""
    base = {"specversion": "1.0", "id": "1"}
    hit = Event({**base, "source": "/orders", "type": "com.example.o", "subject": "s"})
    miss = Event({**base, "source": "/other", "type": "org.other"})
    out: dict[str, float] = {}
    for dialect, spec in FILTERS.items():
        names = [f"ns/t{i}" for i in range(n)]
        index = TriggerIndex({name: compile_trigger_filter(None, spec, trigger=name) for name in names})
        for label, event in (("match", hit), ("no match", miss)):
            out[f"{dialect} {label}"] = per_call_us(partial(index.match, event))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triggers", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this process is the load generator
    rates: dict[str, float] = {}
    with TemporaryDirectory() as tmp:
        sink_port = free_port()
        sink = f"http://127.0.0.1:{sink_port}/"
        with process(server("sink", sink_port, LOAD_CPU), sink):
            for dialect in FILTERS:
                port = free_port()
                folder = manifests(Path(tmp) / dialect.replace("/", "-"), sink, dialect, args.triggers)
                with process(
                    weir(port, folder, Path(tmp) / (dialect.replace("/", "-") + "-data")),
                    f"http://127.0.0.1:{port}/healthz",
                ):
                    url = f"http://127.0.0.1:{port}/default/default"
                    rates[dialect] = delivered(url, sink, args.seconds)
    costs = router_cost(args.triggers)
    ratio = rates["exact/prefix"] / rates["cesql"]
    command = "python -m bench.cesql_fanout" + (
        f" --triggers {args.triggers}" if args.triggers != 100 else ""
    )
    lines = [
        f"Command: `{command}`; {args.triggers} Triggers that all match, 1 KiB events, "
        "closed-loop poster with 4 connections; Weir pinned to core 0, poster and sink on core 1.",
        "",
        "| filters | deliveries/s | router µs/event, matching | router µs/event, not matching |",
        "|---|---|---|---|",
        *[
            f"| {d} | {rates[d]:,.0f} | {costs[d + ' match']:.1f} | {costs[d + ' no match']:.1f} |"
            for d in FILTERS
        ],
        "",
        f"Cost of a CESQL Trigger relative to exact/prefix (deliveries/s ratio): {ratio:.2f}x — bar <= 1.5x: "
        + ("met" if ratio <= 1.5 else "NOT met"),
    ]
    text = "\n".join(lines)
    write_section("CESQL filters in fan-out (issue 4)", text)
    print(text)


if __name__ == "__main__":
    main()
