"""Baseline servers for the benchmarks, each a plain ASGI app on uvicorn.

``python -m bench.servers accept --port P``            answers every request 202 (the raw ASGI ceiling)
``python -m bench.servers relay --port P --sink URL``   bare relay: reads the body, POSTs it with aiohttp
                                                          to the sink (same headers), answers 202
``python -m bench.servers sink --port P``               counts POSTs; ``GET /count`` returns the count
"""

from __future__ import annotations

import argparse
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
    """The least a relay can do: no parsing, no storage, no retries."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.startswith(b"ce-")}
        headers["content-type"] = "application/json"
        async with self.session.post(self.sink, data=body, headers=headers) as response:
            await response.read()
        await _answer(send, 202)


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
