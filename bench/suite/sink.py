"""The benchmark sink: a raw ASGI app on uvicorn that records every delivery it receives.

``python -m bench.suite.sink --port P``

Paths (any method but GET is a delivery):

* ``/fail/...`` answers ``503`` (no ``Retry-After``) and records an *attempt*;
* ``/hang/...`` records an attempt and never answers: it waits until the client gives up;
* anything else answers ``202`` and records a *delivery* (see :mod:`bench.suite.recorder`).

Control: ``GET /_stats?run=R[&prefix=/t/][&until=T][&bucket=S]`` returns the run's statistics as
JSON; ``DELETE /_runs/R`` forgets a run; ``GET /`` answers ``200`` (readiness).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

from bench.suite.recorder import Recorder, split_id

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HANG_LIMIT = 300.0
"""Seconds a ``/hang`` request is held at most, should its client never give up."""


async def _drain(receive: Receive) -> bool:
    """Read the whole body; ``False`` when the client disconnected first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True


async def read_body(receive: Receive) -> bytes:
    """The whole request body (what arrived, should the client disconnect first)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def cloudevent_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The request's ``ce-*`` and ``content-type`` headers: what a relay keeps of a binary event."""
    return [(k, v) for k, v in scope["headers"] if k.startswith(b"ce-") or k == b"content-type"]


async def answer_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _answer(send: Send, status: int, body: bytes = b"", json: bool = False) -> None:
    headers = [(b"content-type", b"application/json")] if json else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SinkApp:
    """Records deliveries and attempts into a :class:`Recorder`."""

    def __init__(self) -> None:
        self.recorder = Recorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        now = time.time()
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "GET":
            await self._control_get(path, scope, send)
            return
        if method == "DELETE" and path.startswith("/_runs/"):
            self.recorder.drop(path[len("/_runs/") :])
            await _answer(send, 204)
            return
        if not await _drain(receive):
            return
        event_id = sent = None
        for name, value in scope["headers"]:
            if name == b"ce-id":
                event_id = value.decode()
            elif name == b"ce-benchsent":
                sent = float(value)
        parsed = split_id(event_id) if event_id is not None else None
        if parsed is None or sent is None:
            await _answer(send, 400, b"ce-id <run>-<index> and ce-benchsent are required")
            return
        run, idx = parsed
        log = self.recorder.run(run)
        if path.startswith("/fail"):
            log.attempt(path, idx, now)
            await _answer(send, 503)
        elif path.startswith("/hang"):
            log.attempt(path, idx, now)
            # The body is read; the next message can only be the client's disconnect.
            try:
                await asyncio.wait_for(receive(), HANG_LIMIT)
            except TimeoutError:
                await _answer(send, 504)
        else:
            log.delivery(path, idx, sent, now)
            await _answer(send, 202)

    async def _control_get(self, path: str, scope: Scope, send: Send) -> None:
        if path != "/_stats":
            await _answer(send, 200, b"ok")
            return
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        run = self.recorder.runs.get(query.get("run", ""))
        if run is None:
            await _answer(send, 404, b'{"error": "no such run"}', json=True)
            return
        until = float(query["until"]) if "until" in query else None
        bucket = float(query["bucket"]) if "bucket" in query else None
        stats = run.stats(prefix=query.get("prefix", ""), until=until, bucket=bucket)
        await _answer(send, 200, orjson.dumps(stats), json=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark sink: records deliveries per run.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        SinkApp(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
