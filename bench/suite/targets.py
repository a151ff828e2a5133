"""The systems a step can load: B1 (the sink itself), the bare relay and Weir.

The bare relay is B2 on the embedded stores (SQLite, or a list for ``memory``) and B3 on the
shared ones (NATS JetStream, Kafka), each on the run's backend.

Weir runs as ``weir run`` on core 0 from manifests written here: one Broker ``default/default``
and Triggers whose subscribers are sink paths ``/t/<k>`` (or ``/fail/..``, ``/hang/..``). A Trigger
*matches* the benchmark events when its exact ``type`` filter is :data:`EVENT_TYPE`; the others
filter on types no event has.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.suite.config import SHARED
from bench.suite.context import Ctx
from bench.suite.openloop import EVENT_TYPE
from bench.suite.procs import SUT_CPU, Proc, free_port, pinned, running

WEIR = str(Path(sys.executable).parent / "weir")
TRIGGERS_API = "/apis/eventing.knative.dev/v1/namespaces/default/triggers"
BROKER_YAML = (
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: default}\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerDoc:
    name: str
    subscriber: str
    event_type: str = EVENT_TYPE
    delivery: str = ""
    """YAML of ``spec.delivery`` as one flow mapping, e.g. ``{retry: 3}``; empty for the Broker's."""

    def yaml(self) -> str:
        delivery = f"  delivery: {self.delivery}\n" if self.delivery else ""
        return (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
            f"metadata: {{name: {self.name}, namespace: default}}\n"
            f"spec:\n  broker: default\n  filter: {{attributes: {{type: {self.event_type}}}}}\n"
            f"  subscriber: {{uri: '{self.subscriber}'}}\n{delivery}"
        )


def fanout(sink: str, total: int, matching: int) -> list[TriggerDoc]:
    """``total`` Triggers to ``/t/<k>``: the first ``matching`` match, the others never do."""
    return [
        TriggerDoc(
            name=f"t{k}",
            subscriber=f"{sink}/t/{k}",
            event_type=EVENT_TYPE if k < matching else f"dev.weir.other.{k}",
        )
        for k in range(total)
    ]


def write_manifests(path: Path, triggers: Iterable[TriggerDoc], *, broker: bool = True) -> Path:
    docs = ([BROKER_YAML] if broker else []) + [t.yaml() for t in triggers]
    path.write_text("---\n".join(docs))
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Sut:
    name: str
    url: str
    """Where events are POSTed."""
    pid: int | None
    """The process whose CPU and memory count (``None`` for B1: there is none)."""
    base: str = ""
    proc: Proc | None = None


def direct(ctx: Ctx, path: str = "/t/0") -> Sut:
    """B1: the generator posts straight to the sink."""
    return Sut(name="B1", url=f"{ctx.sink}{path}", pid=None)


def relay_name(ctx: Ctx) -> str:
    """``B3`` on a shared backend, ``B2`` on the embedded ones."""
    return "B3" if ctx.config.backend in SHARED else "B2"


@contextlib.asynccontextmanager
async def relay(
    ctx: Ctx, path: str = "/t/0", *, fanout: int = 1, ingress_only: bool = False
) -> AsyncIterator[Sut]:
    """The bare relay of the run's backend (B2 or B3) on a fresh store, POSTing every event to
    ``fanout`` sink paths; ``ingress_only`` needs a shared backend (see
    :mod:`bench.suite.relay_shared`)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = relay_command(ctx, port, path, fanout=fanout, ingress_only=ingress_only)
    async with running(cmd, ctx.logs, f"relay-{port}", base + "/") as proc:
        yield Sut(name=relay_name(ctx), url=base + "/", pid=proc.pid, base=base, proc=proc)


def relay_command(
    ctx: Ctx, port: int, path: str, *, fanout: int = 1, ingress_only: bool = False
) -> list[str]:
    """The relay on ``port``, relaying to sink ``path`` (``{k}`` in it: 0..fanout-1)."""
    backend = ctx.config.backend
    if backend in SHARED:
        assert ctx.log_server is not None
        cmd = [sys.executable, "-m", f"bench.suite.relay_{backend}", "--port", str(port), "--sink",
               ctx.sink + path, "--server", ctx.log_server.address, "--name", f"relay-{ctx.fresh_prefix()}",
               "--fanout", str(fanout)]
        return pinned(SUT_CPU, cmd + (["--ingress-only"] if ingress_only else []))
    if ingress_only:
        raise ValueError(f"B2 has no ingress-only mode ({backend})")
    if backend == "memory":
        store = ["--memory"]
    else:
        store = ["--db", str(ctx.scratch("relay") / "relay.db")]
    cmd = [sys.executable, "-m", "bench.suite.relay", "--port", str(port), "--sink", ctx.sink + path, *store,
           "--fanout", str(fanout)]
    return pinned(SUT_CPU, cmd)


def weir_command(
    ctx: Ctx, folder: Path, port: int, *, watch: bool = False, store: str | None = None, role: str = "all",
    cpu: int = SUT_CPU,
) -> list[str]:
    """``weir run`` on ``folder`` pinned to ``cpu``; on a shared backend with ``store`` (default:
    a fresh prefix on the run's log server) and ``role``."""
    if ctx.weir_src is None:
        exe = [WEIR]
    else:  # -P: the working directory must not shadow the exported tree on sys.path
        exe = ["env", f"PYTHONPATH={ctx.weir_src}", sys.executable, "-P", "-m", "weir.cli"]
    cmd = [*exe, "run", "-f", str(folder), "--port", str(port), "--log-level", "warning", "--grace", "2"]
    cmd += ["--data-dir", str(folder / "data")]
    if ctx.config.backend == "memory":
        cmd += ["--store", "memory://"]
    elif ctx.config.backend in SHARED:
        cmd += ["--store", store or ctx.store_url(), "--role", role]
    if not watch:
        cmd.append("--no-watch")
    return pinned(cpu, cmd)


async def triggers_ready(ctx: Ctx, base: str, names: Sequence[str]) -> bool:
    """Whether every Trigger in ``names`` is listed with condition ``Ready`` = ``True``."""
    listing = await ctx.get_json(base + TRIGGERS_API)
    ready = {
        item["metadata"]["name"]
        for item in listing["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in item["status"].get("conditions", []))
    }
    return ready.issuperset(names)


async def wait_trigger_ready(ctx: Ctx, base: str, name: str, *, timeout: float = 120.0) -> float:
    """Poll one Trigger until it is Ready; returns ``time.time()`` of the answer that said so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with ctx.session.get(f"{base}{TRIGGERS_API}/{name}") as response:
            if response.status == 200:
                conditions = (await response.json())["status"].get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return time.time()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"Trigger {name} not Ready within {timeout}s")


@contextlib.asynccontextmanager
async def weir(
    ctx: Ctx, triggers: Sequence[TriggerDoc], *, name: str = "weir", watch: bool = False,
    store: str | None = None, role: str = "all", cpu: int = SUT_CPU,
) -> AsyncIterator[Sut]:
    """Weir serving ``triggers`` on one Broker, started and with every Trigger Ready; on a shared
    backend with ``store`` (default: a fresh prefix) and ``role``, pinned to ``cpu``."""
    folder = ctx.scratch(name)
    write_manifests(folder / "bench.yaml", triggers)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = weir_command(ctx, folder, port, watch=watch, store=store, role=role, cpu=cpu)
    async with running(cmd, ctx.logs, f"{name}-{port}", base + "/healthz", timeout=180) as proc:
        if triggers:
            await wait_trigger_ready(ctx, base, triggers[-1].name)
            if not await triggers_ready(ctx, base, [t.name for t in triggers]):
                raise RuntimeError(f"{name}: not every Trigger is Ready\n{proc.stderr_tail()}")
        yield Sut(name="weir", url=f"{base}/default/default", pid=proc.pid, base=base, proc=proc)
