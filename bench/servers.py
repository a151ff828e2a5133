"""Baseline servers for the benchmarks, each a plain ASGI app on uvicorn.

``python -m bench.servers accept --port P``            answers every request 202 (the raw ASGI ceiling)
``python -m bench.servers relay --port P --sink URL``   bare relay: answers 202, then POSTs the body with
                                                          aiohttp to the sink (same ce- headers)
``python -m bench.servers sink --port P``               counts POSTs; ``GET /count`` returns the count
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]


async def _body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def accept_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await _body(receive)
    await _answer(send, 202)


class RelayApp:
    """The least a relay can do, answering like Weir does: 202 on receipt, then POST to the sink.

    No parsing, storage, filtering or retries. A bounded queue gives back-pressure, and a fixed
    pool of sender tasks delivers, so the relay's rate is what one core can forward.
    """

    def __init__(self, sink: str, *, senders: int = 64, queue: int = 4096) -> None:
        self.sink = sink
        self.senders = senders
        self.queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue(queue)
        self.session: aiohttp.ClientSession | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
            self.tasks = [asyncio.create_task(self._send()) for _ in range(self.senders)]
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.startswith(b"ce-")}
        headers["content-type"] = "application/json"
        await self.queue.put((headers, body))
        await _answer(send, 202)

    async def _send(self) -> None:
        assert self.session is not None
        while True:
            headers, body = await self.queue.get()
            try:
                async with self.session.post(self.sink, data=body, headers=headers) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass  # a baseline without retries: a lost event shows as a lower delivered rate


class SinkApp:
    """Counts delivered events."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await _body(receive)
        if scope["method"] == "GET":
            await _answer(send, 200, str(self.count).encode())
            return
        self.count += 1
        await _answer(send, 202)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["accept", "relay", "sink"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", default="")
    args = parser.parse_args()
    app: Any = {"accept": accept_app, "relay": RelayApp(args.sink), "sink": SinkApp()}[args.kind]
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
