"""What the B3 relays (:mod:`bench.suite.relay_nats`, :mod:`bench.suite.relay_kafka`) share.

A B3 relay is the least a durable relay on a shared log server must do: a raw ASGI handler keeps
the body and the ``ce-*`` and ``content-type`` headers, appends them to the log and answers
``202`` once the server acknowledged the append; a consumer task takes what was appended, POSTs
it with aiohttp (binary mode, one keep-alive pool of 256 connections) and acknowledges it. No
parsing, filtering, retries or bookkeeping: a POST that fails is dropped.

A relay implements :meth:`SharedRelay.connect` (at lifespan startup, so readiness means
connected), :meth:`~SharedRelay.append`, :meth:`~SharedRelay.consume` and
:meth:`~SharedRelay.close`. ``--fanout N`` POSTs every event to N sink paths (``{k}`` in the
sink URL is replaced by 0..N-1): the bare counterpart of N matching Triggers. ``--ingress-only``
runs no consumer (the counterpart of Weir serving a Broker without Triggers).

``python -m bench.suite.relay_<backend> --port P --sink URL --server HOST:PORT --name NAME
[--fanout N] [--ingress-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiohttp
import uvicorn

from bench.suite.sink import Receive, Scope, Send, answer_empty, cloudevent_headers, read_body

WINDOW = 256
"""Events being POSTed at once (and connections in the pool)."""
Headers = list[tuple[str, str]]


class SharedRelay:
    def __init__(self, *, server: str, name: str, sinks: Sequence[str], ingress_only: bool) -> None:
        self.server = server
        """``host:port`` of the log server."""
        self.name = name
        """Name of the relay's stream or topic (fresh for every start)."""
        self.sinks = list(sinks)
        self.ingress_only = ingress_only
        # A window of WINDOW POSTs, not events: a window of WINDOW events queued up to WINDOW·N
        # requests in aiohttp's pool (B2 built that way spent 765 µs of CPU per delivery at
        # N = 50, Weir 314; B3 on Kafka relayed 2,692 deliveries/s at N = 1,000 that way and
        # 4,123 this way, in back-to-back runs).
        self.window = asyncio.Semaphore(max(1, WINDOW // len(self.sinks)))
        self.posts = asyncio.Semaphore(WINDOW)
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession  # created at startup, on the serving loop

    async def connect(self) -> None:
        raise NotImplementedError

    async def append(self, headers: Headers, body: bytes) -> None:
        """Append one event; return once the server acknowledged it (stored)."""
        raise NotImplementedError

    async def consume(self) -> None:
        """Deliver what was appended, for as long as the relay runs."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def post(self, headers: Mapping[str, str], body: bytes) -> None:
        """POST one event to every sink URL at once; failures are dropped (no retries)."""

        async def one(url: str) -> None:
            try:
                async with self.posts, self.session.post(url, data=body, headers=headers) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass

        if len(self.sinks) == 1:
            await one(self.sinks[0])
        else:
            await asyncio.gather(*(one(url) for url in self.sinks))

    async def spawn(
        self, headers: Mapping[str, str], body: bytes, ack: Callable[[], Awaitable[None]]
    ) -> None:
        """POST one event in the background, then ``ack()`` it: up to :data:`WINDOW` POSTs in
        flight (at least one event's)."""
        await self.window.acquire()

        async def deliver() -> None:
            try:
                await self.post(headers, body)
                await ack()
            finally:
                self.window.release()

        task = asyncio.create_task(deliver())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        consumer: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=WINDOW))
                await self.connect()
                if not self.ingress_only:
                    consumer = asyncio.create_task(self.consume())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if consumer is not None:
                    consumer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer
                await self.close()
                await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["method"] == "POST":
            await self.append([(k.decode(), v.decode()) for k, v in cloudevent_headers(scope)], body)
        await answer_empty(send, 202 if scope["method"] == "POST" else 200)


def main(relay: type[SharedRelay], description: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", required=True, help="sink URL; {k} is replaced by 0..N-1 with --fanout N")
    parser.add_argument("--server", required=True, help="HOST:PORT of the log server")
    parser.add_argument("--name", required=True, help="stream or topic name")
    parser.add_argument("--fanout", type=int, default=1)
    parser.add_argument("--ingress-only", action="store_true")
    args = parser.parse_args()
    sinks = [args.sink.replace("{k}", str(k)) for k in range(args.fanout)]
    app = relay(server=args.server, name=args.name, sinks=sinks, ingress_only=args.ingress_only)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on")
