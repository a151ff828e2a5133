"""``weir run``: the composition root that wires store, ingress, dispatcher and control plane.

Lifecycle
---------
1. Load the manifests; any problem is printed (file, document, field, reason) and Weir exits 2.
2. Open the store, start the dispatcher, apply the manifests, start serving HTTP, print each
   Broker's ingress URL.
3. While running, edits to the manifest files are applied without a restart (``--no-watch`` turns
   this off). An edit with problems is rejected as a whole and logged; the running state stays.
4. On SIGTERM or SIGINT: stop accepting requests (in-flight requests finish, so every 202 given is
   durable), let in-flight deliveries finish for up to ``--grace`` seconds (the rest stay pending in
   the store and are delivered after the next start), close the store, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import uvicorn

from broker.delivery.dispatcher import Dispatcher, DispatcherConfig
from broker.delivery.http_sender import HttpSender
from broker.errors import StoreError
from broker.ingest import Ingest
from broker.ingress import IngressApp
from broker.store.factory import is_shared, needs_polling, open_store
from sources.webhooks import WebhookRouter
from weir.admin import create_admin
from weir.app import WeirApp
from weir.controlplane import ControlPlane
from weir.heap import pin_mmap_threshold
from weir.manifests import load_paths
from weir.secrets import SecretResolver
from weir.sinks import LocalSender, SinkRegistry
from weir.sourceplane import SOURCES_LEASE, SourcePlane
from weir.watch import watch_manifests

log = logging.getLogger("weir")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything ``weir run`` needs; built from the command line by :mod:`weir.cli`."""

    paths: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = ""
    """Store URL: ``sqlite:///path.db`` (default: ``<data_dir>/weir.db``), ``memory://``,
    ``nats://host:port`` or ``kafka://host:port``."""
    role: Literal["all", "ingress", "dispatcher"] = "all"
    """``ingress``: accept and store events only; ``dispatcher``: route, deliver and run the
    sources only; ``all``: both. The split roles need a shared store (NATS or Kafka)."""
    data_dir: str = ".weir"
    resolve: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """``--resolve NAMESPACE/NAME=URL``: where a ``v1`` Service reference points."""
    max_event_bytes: int = 1 << 20
    store_max_events: int | None = None
    store_max_bytes: int | None = None
    max_event_age: float | None = None
    delivery_timeout: float | None = 30.0
    grace: float = 10.0
    """Seconds in-flight deliveries may take to finish at shutdown."""
    watch: bool = True
    secrets_dir: str = ".weir/secrets"
    """Where ``secretKeyRef`` values are read: ``<dir>/<namespace>/<name>/<key>`` (or the variable
    ``WEIR_SECRET_<NAMESPACE>_<NAME>_<KEY>``, which wins)."""


EMPTY_PAUSE = 1.0
"""Seconds between cursor moves of a Broker without Triggers on a shared store: on Kafka, S6
with ``--role all`` went from 0.40x/0.55x to 0.71x/0.78x of the bare relay with it."""
GC_THRESHOLD = 20_000
"""Allocations between young-generation garbage collections while serving (CPython: 700)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Weir orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def advertised_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def role_problem(config: RunConfig) -> str | None:
    """Why ``config.role`` cannot run on ``config.store``, or ``None``."""
    if config.role != "all" and not is_shared(config.store):
        return (f"--role {config.role} needs a store several processes share (--store nats://HOST:PORT "
                f"or kafka://HOST:PORT); {config.store or 'the default SQLite store'} belongs to one process")
    return None


async def run(config: RunConfig) -> int:
    """Run Weir until SIGTERM/SIGINT; returns the process exit code."""
    problem = role_problem(config)
    if problem is not None:
        print(f"weir: {problem}", file=sys.stderr)
        return 2
    dispatching = config.role in ("all", "dispatcher")
    # Before the load: its large temporary buffers must not stay resident (see weir.heap).
    pin_mmap_threshold()
    loaded = load_paths(config.paths)
    if loaded.problems:
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        print(f"weir: {len(loaded.problems)} problem(s) in the manifests; nothing started", file=sys.stderr)
        return 2

    base_url = f"http://{advertised_host(config.host)}:{config.port}"
    try:
        store = open_store(
            config.store,
            data_dir=config.data_dir,
            max_events=config.store_max_events,
            max_bytes=config.store_max_bytes,
        )
    except ValueError as exc:  # an invalid --store URL: the message names the parameter
        print(f"weir: {exc}", file=sys.stderr)
        return 2
    shared = is_shared(config.store)
    sinks = SinkRegistry(base_url, max_event_bytes=config.max_event_bytes)
    sender = LocalSender(HttpSender(default_timeout=config.delivery_timeout), sinks)
    ingest = Ingest(store)
    dispatcher = Dispatcher(
        store=store,
        sender=sender,
        ingest=ingest,
        config=DispatcherConfig(default_timeout=config.delivery_timeout, max_event_age=config.max_event_age,
                                poll_idle=needs_polling(config.store), start_dormant=not shared,
                                empty_pause=EMPTY_PAUSE if shared else 0.0),
    )
    webhooks = WebhookRouter()
    source_plane = SourcePlane(
        sender=sender,
        store=store,
        state_dir=Path(config.data_dir) / "sources",
        environ=os.environ,
        webhooks=webhooks,
        secrets=SecretResolver(secrets_dir=Path(config.secrets_dir), environ=os.environ),
        lease=(lambda: store.lease(SOURCES_LEASE)) if shared else None,
    )
    control = ControlPlane(
        dispatcher=dispatcher,
        sinks=sinks,
        base_url=base_url,
        service_map=config.resolve,
        # Sources run beside the dispatcher; an ingress replica only accepts events.
        sources=source_plane if dispatching else None,
    )
    sender.serve_brokers(base_url, control, ingest)
    applied = False
    app = WeirApp(
        ingress=(
            IngressApp(ingest=ingest, directory=control, max_event_bytes=config.max_event_bytes)
            if config.role in ("all", "ingress")
            else None
        ),
        admin=create_admin(control=control, store=store, ready=lambda: applied),
        sinks=sinks,
        webhooks=webhooks,
    )
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            # No X-Forwarded-* rewriting: Weir does not trust a proxy by default, and the
            # middleware costs every ingress request.
            proxy_headers=False,
            server_header=False,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Closed in reverse order on every exit: sources, dispatcher (grace), sender, store.
    async with contextlib.AsyncExitStack() as running:
        try:
            await store.open()
        except StoreError as exc:  # unreachable (retriable), or set up wrongly, e.g. create=false
            print(f"weir: cannot open the store: {exc}", file=sys.stderr)
            return 1 if exc.retriable else 2
        running.push_async_callback(store.close)
        running.push_async_callback(sender.close)
        if dispatching:
            # An ingress replica still applies plans to the (never started) dispatcher: that
            # keeps status and validation identical across roles at no cost.
            await dispatcher.start()
        running.push_async_callback(dispatcher.stop, config.grace)
        running.push_async_callback(source_plane.stop)
        problems = await control.apply(loaded)
        if problems:  # immutability cannot fail on the first apply; kept for safety
            for problem in problems:
                print(problem, file=sys.stderr)
            return 2
        applied = True
        # The loaded configuration lives as long as the process: keep it out of every future
        # garbage collection (with 10,000 Triggers full collections paused the loop for ~1 s).
        gc.freeze()
        # Deliveries in flight allocate many short-lived objects; at the default threshold (700)
        # young-generation collections took about a fifth of the loop in fan-out profiles.
        # Reference counting frees nearly all of them; the collector only has cycles to find.
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])

        serving = asyncio.create_task(server.serve())
        # uvicorn exposes no "started" event, only a flag.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if serving.done():
            return 1  # binding failed (port in use, ...); uvicorn has logged why
        for broker in control.objects("Broker"):
            meta = broker["metadata"]
            print(f"Broker {meta['namespace']}/{meta['name']} ingress: {broker['status']['address']['url']}")
        store_name = config.store or Path(config.data_dir) / "weir.db"
        print(f"Weir is serving on {base_url} (role: {config.role}, store: {store_name})")
        sys.stdout.flush()

        watcher = asyncio.create_task(watch_manifests(config.paths, control, stop)) if config.watch else None
        await stop.wait()

        log.info("shutting down: no new requests; in-flight deliveries get %.1fs", config.grace)
        server.should_exit = True
        await serving
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    log.info("stopped cleanly")
    return 0
