"""A NATS server with JetStream for tests: Debian's ``nats-server``, on a free loopback port.

``nats_url`` (session-scoped) yields ``nats://127.0.0.1:PORT`` of a server started for the
session with a file store in a temporary directory. :class:`NatsServer` starts, stops, kills and
restarts one server on the same port and store directory, for tests that take the server away
mid-stream; ``own_server`` gives a test such a server as its ``server`` fixture. Use the
fixtures with::

    from tests.nats_server import nats_url  # noqa: F401

Port 4222 (the machine's own NATS service) is never used.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARY = "/usr/sbin/nats-server"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
RESERVED_PORT = 4222


def nats_binary() -> str:
    """The ``nats-server`` executable; fails the test with the install command when absent."""
    found = shutil.which("nats-server") or (BINARY if Path(BINARY).is_file() else None)
    if found is None:
        pytest.fail("nats-server is not installed: apt-get install -y nats-server")
    return found


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never the machine's own NATS port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != RESERVED_PORT:
            return port


def accepts(port: int) -> bool:
    """Whether a NATS server on ``port`` answers with its INFO line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class NatsServer:
    """One ``nats-server -js`` process; :meth:`restart` keeps the port and the store directory."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = free_port() if port is None else port
        self._log = store_dir / "nats-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it accepts connections (fails after a deadline)."""
        if self.running:
            return
        command = [nats_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not start on {self.url}:\n{self._log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), killing the process if it does not exit in time."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server would not act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()  # SIGKILL ends a paused process too
            process.wait()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open and nothing is answered, as on a
        server stalled by load; :meth:`resume` lets it read what was sent meanwhile."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        # The signal is delivered asynchronously: return once the process is stopped.
        stat = Path(f"/proc/{self._process.pid}/stat")
        deadline = time.monotonic() + START_TIMEOUT
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server on {self.url} did not stop on SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same store."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """``nats://127.0.0.1:PORT`` of a JetStream server running for the whole session."""
    with tempfile.TemporaryDirectory(prefix="weir-nats-") as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(name="server")
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own (file store under ``tmp_path``), killed after the test: for
    tests that stop, kill, restart or pause it. Import ``own_server`` and ask for ``server``."""
    store_dir = tmp_path / "nats"
    store_dir.mkdir()
    own = NatsServer(store_dir)
    own.start()
    yield own
    own.kill()
