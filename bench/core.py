"""Kernel benchmark: ingress and end-to-end throughput against baselines measured in the same run.

``python -m bench.core [--seconds 10]`` measures, with the system under test pinned to core 0 and the
load generator and sink on core 1 (where ``taskset`` exists):

* ingress requests/s (``wrk -t1 -c64``, 1 KiB binary events): a raw ASGI app answering 202, and Weir's
  ingress on the SQLite store (every 202 durable) with no Trigger;
* delivered events/s (closed-loop aiohttp poster, 32 connections): a bare relay (raw ASGI in, 202 on
  receipt, aiohttp POST out, nothing stored), Weir end to end with one Trigger, and Weir with the same
  Trigger plus 1,000 Triggers that never match.

Every measurement is repeated ``--repeat`` times (default 3), the rounds interleaved so that a
disturbance on the shared machine hits baselines and Weir alike; the medians are reported.

Results are appended to ``bench/results/<date>-core.json`` and written into ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench import load
from bench.report import write_section

ROOT = Path(__file__).resolve().parent.parent
SUT_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if shutil.which("taskset") else cmd


def wait_http(url: str, deadline: float = 20.0) -> None:
    async def poll() -> None:
        end = time.monotonic() + deadline
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < end:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise TimeoutError(f"{url} did not answer within {deadline}s")

    asyncio.run(poll())


@contextlib.contextmanager
def process(cmd: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server(kind: str, port: int, cpu: str, sink: str = "") -> list[str]:
    cmd = [sys.executable, "-m", "bench.servers", kind, "--port", str(port)]
    return pinned(cpu, cmd + (["--sink", sink] if sink else []))


def weir(port: int, manifests: Path, data: Path) -> list[str]:
    exe = str(Path(sys.executable).parent / "weir")
    cmd = [exe, "run", "-f", str(manifests), "--port", str(port), "--data-dir", str(data), "--no-watch"]
    return pinned(SUT_CPU, [*cmd, "--log-level", "warning"])


def manifests(folder: Path, sink_url: str | None, non_matching: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docs = ["apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"]
    if sink_url:
        docs.append(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: bench}\n"
            "spec:\n  broker: default\n  filter: {attributes: {type: dev.weir.bench}}\n"
            f"  subscriber: {{uri: '{sink_url}'}}\n"
        )
    for i in range(non_matching):
        docs.append(
            f"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: other-{i}}}\n"
            f"spec:\n  broker: default\n  filter: {{attributes: {{type: dev.weir.other.{i}}}}}\n"
            f"  subscriber: {{uri: '{sink_url or 'http://127.0.0.1:9/'}'}}\n"
        )
    (folder / "bench.yaml").write_text("---\n".join(docs))
    return folder


def sink_count(url: str) -> int:
    async def get() -> int:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return int(await response.text())

    return asyncio.run(get())


def ingress_rate(url: str, seconds: int) -> float:
    rate = load.wrk(url, seconds, 64, 1024, LOAD_CPU)
    if rate is not None:
        return rate
    return delivered_rate(url, None, seconds)  # no wrk: accepted/s from the Python poster


def delivered_rate(url: str, count_url: str | None, seconds: float) -> float:
    """Events/s the sink received while a closed-loop poster ran for ``seconds`` (after a warm-up)."""
    poster = pinned(LOAD_CPU, [sys.executable, "-m", "bench.load", "post", url, "--concurrency", "32"])
    subprocess.run([*poster, "--seconds", "2"], check=True, capture_output=True)  # warm-up
    before = sink_count(count_url) if count_url else 0
    out = subprocess.run([*poster, "--seconds", str(seconds)], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    if count_url is None:
        return float(result["accepted"]) / float(result["seconds"])
    return (sink_count(count_url) - before) / float(result["seconds"])


def run(seconds: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        port = free_port()
        with process(server("accept", port, SUT_CPU), f"http://127.0.0.1:{port}/"):
            results["raw_asgi_rps"] = ingress_rate(f"http://127.0.0.1:{port}/default/default", seconds)
        port = free_port()
        folder = manifests(base / "ingress", None, 0)
        with process(weir(port, folder, base / "d1"), f"http://127.0.0.1:{port}/healthz"):
            results["weir_ingress_rps"] = ingress_rate(f"http://127.0.0.1:{port}/default/default", seconds)

        sink_port = free_port()
        sink = f"http://127.0.0.1:{sink_port}/"
        with process(server("sink", sink_port, LOAD_CPU), sink):
            port = free_port()
            with process(server("relay", port, SUT_CPU, sink), f"http://127.0.0.1:{port}/"):
                results["relay_eps"] = delivered_rate(f"http://127.0.0.1:{port}/", sink, seconds)
            for key, others, data in (
                ("weir_e2e_eps", 0, "d2"),
                ("weir_e2e_1000_nonmatching_eps", 1000, "d3"),
            ):
                port = free_port()
                folder = manifests(base / key, sink, others)
                with process(weir(port, folder, base / data), f"http://127.0.0.1:{port}/healthz"):
                    results[key] = delivered_rate(f"http://127.0.0.1:{port}/default/default", sink, seconds)
    return results


def ratios(r: dict[str, float]) -> tuple[float, float, float]:
    """(ingress / raw ASGI, end to end / relay, cost of 1,000 non-matching Triggers) of one round."""
    return (
        r["weir_ingress_rps"] / r["raw_asgi_rps"],
        r["weir_e2e_eps"] / r["relay_eps"],
        1 - r["weir_e2e_1000_nonmatching_eps"] / r["weir_e2e_eps"],
    )


def report(results: dict[str, float], command: str, rounds: list[dict[str, float]]) -> str:
    # Each round measures Weir beside its baseline within the same minute: the ratios are paired
    # per round, and their medians are steadier than ratios of medians taken across rounds.
    ingress, e2e, cost = (statistics.median(column) for column in zip(*map(ratios, rounds), strict=True))
    tool = "wrk -t1 -c64" if shutil.which("wrk") else "Python poster (wrk not installed)"
    rows = [
        ("Raw ASGI, answers 202 (baseline)", f"{results['raw_asgi_rps']:,.0f} req/s", "1.00x", ""),
        (
            "Weir ingress, SQLite, durable 202",
            f"{results['weir_ingress_rps']:,.0f} req/s",
            f"{ingress:.2f}x",
            "bar >= 0.35x: " + ("met" if ingress >= 0.35 else "NOT met"),
        ),
        ("Bare relay, raw ASGI + aiohttp (baseline)", f"{results['relay_eps']:,.0f} ev/s", "1.00x", ""),
        (
            "Weir end to end, 1 Trigger",
            f"{results['weir_e2e_eps']:,.0f} ev/s",
            f"{e2e:.2f}x",
            "bar >= 0.5x: " + ("met" if e2e >= 0.5 else "NOT met"),
        ),
        (
            "Weir end to end, + 1,000 non-matching Triggers",
            f"{results['weir_e2e_1000_nonmatching_eps']:,.0f} ev/s",
            f"{1 - cost:.2f}x of 1 Trigger",
            "bar cost <= 10%: " + ("met" if cost <= 0.10 else "NOT met"),
        ),
    ]
    lines = [
        f"Command: `{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; "
        f"system under test pinned to core {SUT_CPU}, load and sink on core {LOAD_CPU}; "
        f"1 KiB binary-mode events; ingress load: {tool}; "
        "delivery load: closed-loop aiohttp poster, 32 connections. Rates: medians of the rounds; "
        "ratios: medians of the per-round ratios.",
        "",
        "| measurement | result | ratio to baseline | issue bar |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "Per round (ingress ratio / end-to-end ratio / non-matching cost): "
        + "; ".join(f"{a:.2f}x / {b:.2f}x / {c:+.0%}" for a, b, c in map(ratios, rounds)),
    ]
    return "\n".join(lines)


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = [run(args.seconds) for _ in range(args.repeat)]
    for i, r in enumerate(rounds, 1):
        print(f"round {i}: " + ", ".join(f"{k}={v:,.0f}" for k, v in r.items()))
    results = median_of(rounds)
    command = "python -m bench.core"
    command += f" --seconds {args.seconds}" if args.seconds != 10 else ""
    command += f" --repeat {args.repeat}" if args.repeat != 3 else ""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    with (out / f"{datetime.now(UTC):%Y-%m-%d}-core.json").open("a") as fh:
        record = {"when": datetime.now(UTC).isoformat(), "rounds": rounds, "median": results}
        fh.write(json.dumps(record) + "\n")
    text = report(results, command, rounds)
    write_section("Kernel: ingress and end to end (issue 2)", text)
    print(text)


if __name__ == "__main__":
    main()
