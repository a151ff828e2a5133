"""Run ``weir run`` as a real subprocess for end-to-end tests.

``WeirProcess`` starts Weir on a free loopback port with its own data directory, captures stdout and
stderr to files (so tests can poll what the log sink printed), waits for ``/healthz``, and stops it
with SIGTERM (clean) or SIGKILL (crash).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

WEIR = str(Path(sys.executable).parent / "weir")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def poll(
    check: object, *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Await ``check()`` (sync or async, truthy when done) until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class WeirProcess:
    """One ``weir run`` subprocess."""

    def __init__(self, paths: Sequence[Path], workdir: Path, *extra: str, port: int | None = None) -> None:
        self.paths = list(paths)
        self.workdir = workdir
        self.extra = list(extra)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / f"weir-{self.port}.out"
        self.stderr_path = workdir / f"weir-{self.port}.err"
        self.proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        cmd = [WEIR, "run", "--port", str(self.port), "--data-dir", str(self.workdir / "data")]
        for path in self.paths:
            cmd += ["-f", str(path)]
        return cmd + self.extra

    async def start(self, *, timeout: float = 20.0) -> WeirProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(*self.command(), stdout=out, stderr=err, env=env)
        await poll(
            self._healthy, timeout=timeout, what=f"weir on {self.url} to serve (stderr: {self.stderr_path})"
        )
        return self

    async def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"weir exited with {self.proc.returncode}: {self.stderr()}")
        try:
            async with aiohttp.ClientSession() as session, session.get(self.url + "/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait without blocking the loop (sinks in this process keep serving)."""
        proc = self.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), timeout)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed on purpose."""
        assert self.proc is not None
        self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), 10)

    async def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            await self.kill()


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``weir ARGS...``; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        WEIR, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()
