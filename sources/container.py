"""ContainerSource: the container's ``command`` and ``args`` as a local process that posts to K_SINK.

Knative runs ``spec.template`` as a Deployment and injects, through a SinkBinding, the variables
the program reads to find its sink. Weir runs the first container's ``command`` + ``args`` with
its ``env`` as a child process (``image`` is only used on Kubernetes) and sets:

* ``K_SINK``: the resolved sink URL; the program POSTs its CloudEvents there itself;
* ``K_CE_OVERRIDES``: ``{"extensions": {...}}`` from ``spec.ceOverrides`` (``{"extensions": {}}``
  when there are none), extensions the program should set on every event it sends.

Kubernetes ``$(VAR)`` references in ``command`` and ``args`` are expanded from those variables
(``$$`` is a literal ``$``; an unknown reference stays as written). The child also gets the
``base_env`` it is given (Weir passes its own environment, so ``PATH`` finds commands).

Every line the process writes (stdout or stderr) is logged on ``weir.sources.container`` at INFO
as ``<namespace>/<name>: <line>``. When the process exits, for any reason, it is started again
after a back-off of 1 s doubling to 60 s, reset once a run lasted 60 s (Kubernetes'
CrashLoopBackOff). The process runs in its own process group; when it exits, whatever it left
running in that group is killed, as a container's processes end with the container.
:meth:`ContainerSource.stop` sends SIGTERM, waits up to 10 s, then SIGKILLs the group.

Status: Ready while the process runs; ``CrashLoopBackOff`` (exited, waiting to restart) or
``StartFailed`` (the command could not be executed) otherwise; ``restarts`` counts restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sources.base import SourceStatus

log = logging.getLogger("weir.sources.container")

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LINE_LIMIT = 1 << 20
"""Longest output line logged as one record (bytes); longer output is logged in pieces."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """Back-off between runs and the stop grace period, in seconds."""

    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 60.0
    """A run at least this long resets the back-off to ``initial``."""
    stop_timeout: float = 10.0
    """How long :meth:`ContainerSource.stop` waits after SIGTERM before SIGKILL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """What one ContainerSource runs: ``containers[0]`` of its template, already validated."""

    namespace: str
    name: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    image: str | None = None
    """Used only on Kubernetes; kept so that a changed image restarts the source like any change."""
    ce_overrides: tuple[tuple[str, str], ...] = ()


def container_env(config: ContainerConfig, sink_uri: str) -> dict[str, str]:
    """The variables the container declares plus ``K_SINK`` and ``K_CE_OVERRIDES`` (which win)."""
    env = dict(config.env)
    env["K_SINK"] = sink_uri
    env["K_CE_OVERRIDES"] = json.dumps({"extensions": dict(config.ce_overrides)}, separators=(",", ":"))
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` is ``$``; references to unknown names stay as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


class ContainerSource:
    """Runs and supervises one ContainerSource process; see the module docstring."""

    def __init__(
        self,
        config: ContainerConfig,
        *,
        sink_uri: str,
        base_env: Mapping[str, str] | None = None,
        restart: RestartPolicy | None = None,
    ) -> None:
        self._config = config
        self._restart = restart or RestartPolicy()
        env = container_env(config, sink_uri)
        self._argv = [expand(part, env) for part in (*config.command, *config.args)]
        self._env = {**(base_env or {}), **env}
        self._label = f"{config.namespace}/{config.name}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._first_run = asyncio.Event()
        self._status = SourceStatus(ready=False, reason="Starting", message="the process has not started yet")
        self._restarts = 0

    async def start(self) -> None:
        """Start the process; returns once it runs or its first start failed (see :meth:`status`)."""
        self._task = asyncio.create_task(self._supervise(), name=f"containersource {self._label}")
        await self._first_run.wait()

    async def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after the grace period) and its supervision."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    def status(self) -> SourceStatus:
        return SourceStatus(
            ready=self._status.ready,
            reason=self._status.reason,
            message=self._status.message,
            extra={"restarts": str(self._restarts)},
        )

    async def _supervise(self) -> None:
        try:
            await self._restart_loop()
        finally:
            # Whatever happened, start() must not wait forever.
            self._first_run.set()

    async def _restart_loop(self) -> None:
        delay = self._restart.initial
        while not self._stopping.is_set():
            began = time.monotonic()
            outcome = await self._run_once()
            if self._stopping.is_set():
                break
            if time.monotonic() - began >= self._restart.reset_after:
                delay = self._restart.initial
            reason = "StartFailed" if outcome.startswith("cannot run") else "CrashLoopBackOff"
            message = f"{outcome}; restarting in {delay:g} s"
            self._status = SourceStatus(ready=False, reason=reason, message=message)
            log.warning("%s: %s", self._label, message)
            self._first_run.set()
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                break
            except TimeoutError:
                pass
            delay = min(delay * 2, self._restart.maximum)
            self._restarts += 1
        self._status = SourceStatus(ready=False, reason="Stopped", message="the source was stopped")

    async def _run_once(self) -> str:
        """Run the process until it exits or the source stops; say how it ended."""
        began = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=self._env,
                cwd=self._config.working_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except (OSError, ValueError) as exc:
            # ValueError: an argument or variable holds a NUL byte, which exec cannot pass.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"cannot run {self._argv[0]!r}: {reason}"
        log.info("%s: started %s as pid %d", self._label, self._argv[0], process.pid)
        self._status = SourceStatus(ready=True, message=f"running as pid {process.pid}")
        self._first_run.set()
        assert process.stdout is not None and process.stderr is not None
        pumps = [asyncio.create_task(self._pump(stream)) for stream in (process.stdout, process.stderr)]
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(process, exited)
            code = await exited
        except asyncio.CancelledError:
            # Supervision cancelled without stop() (the loop is shutting down): leave no orphan.
            _kill_group(process.pid)
            raise
        finally:
            stopping.cancel()
        # Whatever the process left behind would keep its pipes open; a container ends with it.
        _kill_group(process.pid)
        await asyncio.gather(*pumps)
        ran = time.monotonic() - began
        how = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
        log.info("%s: process %d %s after %.1f s", self._label, process.pid, how, ran)
        return f"{how} after {ran:.1f} s"

    async def _terminate(self, process: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        done, _ = await asyncio.wait({exited}, timeout=self._restart.stop_timeout)
        if not done:
            log.warning("%s: pid %d ignored SIGTERM for %g s; killing it", self._label, process.pid,
                        self._restart.stop_timeout)
            _kill_group(process.pid)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # the end of output, without a final newline
            except asyncio.LimitOverrunError as exc:
                # A line longer than the limit: log what is buffered as one record.
                line = await stream.read(max(exc.consumed, 1))
            if not line:
                return
            log.info("%s: %s", self._label, line.decode("utf-8", "replace").rstrip("\r\n"))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
