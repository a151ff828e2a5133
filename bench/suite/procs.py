"""Processes of a benchmark run: pinned start, readiness, CPU and memory readings, clean stop.

The system under test runs on core :data:`SUT_CPU`; the load generator, the sink and the suite's
own process run on core :data:`LOAD_CPU` (``taskset`` for children, ``sched_setaffinity`` for the
suite itself), so the SUT's CPU time is its own and not shared with the load it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

SUT_CPU = 0
LOAD_CPU = 1
ROOT = Path(__file__).resolve().parents[2]
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) > max(SUT_CPU, LOAD_CPU)


def pinned(cpu: int, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run on core ``cpu`` (``taskset`` execs it, so the PID is the command's own)."""
    return ["taskset", "-c", str(cpu), *cmd] if can_pin() else list(cmd)


def pin_self(cpu: int = LOAD_CPU) -> bool:
    """Move the calling process (and the children it starts later) to core ``cpu``."""
    if not can_pin():
        return False
    os.sched_setaffinity(0, {cpu})
    return True


@dataclass(frozen=True, slots=True)
class Usage:
    """One reading of a process: CPU seconds (user + system, all threads) and memory in MB."""

    cpu_s: float
    rss_mb: float
    hwm_mb: float
    at: float
    """``time.monotonic()`` of the reading."""


def usage(pid: int) -> Usage:
    """``utime + stime`` from ``/proc/<pid>/stat`` (the process line sums every thread) and
    ``VmRSS`` / ``VmHWM`` from ``/proc/<pid>/status``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return Usage(cpu_s=cpu, rss_mb=rss, hwm_mb=hwm, at=time.monotonic())


async def wait_http(url: str, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url`` until it answers (any status); returns ``time.time()`` of the first answer."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
            try:
                async with session.get(url) as response:
                    await response.read()
                    return time.time()
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer within {timeout}s") from None
                await asyncio.sleep(0.02)


class Proc:
    """A child process with its output in files under ``logs``."""

    def __init__(self, cmd: Sequence[str], logs: Path, name: str) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out = logs / f"{name}.out"
        self.err = logs / f"{name}.err"
        self.started = time.time()
        with self.out.open("ab") as out, self.err.open("ab") as err:
            self.popen = subprocess.Popen(list(cmd), cwd=ROOT, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def usage(self) -> Usage:
        return usage(self.pid)

    def stderr_tail(self, chars: int = 2000) -> str:
        return self.err.read_text(errors="replace")[-chars:] if self.err.exists() else ""

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait)


@contextlib.asynccontextmanager
async def running(
    cmd: Sequence[str], logs: Path, name: str, ready_url: str, *, timeout: float = 60.0
) -> AsyncIterator[Proc]:
    """Start ``cmd``, wait until ``ready_url`` answers, stop it on exit."""
    proc = Proc(cmd, logs, name)
    try:
        try:
            await wait_http(ready_url, timeout=timeout, proc=proc.popen)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{proc.stderr_tail()}") from None
        yield proc
    finally:
        await proc.stop()
