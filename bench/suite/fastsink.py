"""A fast counting sink: HTTP/1.1 keep-alive on a bare asyncio protocol, parsed by httptools.

``python -m bench.suite.fastsink --port P``

Every request other than ``GET`` is a delivery: it is answered ``202`` with an empty body and
recorded by its ``ce-id`` ``<run>-<index>`` with its arrival time (``time.time()``, seconds); the
first delivery of an index counts, later ones are duplicates. ``GET /_stats?run=R`` returns
``{"deliveries", "dup"}`` of the run, plus ``"arrivals"`` (the first deliveries' arrival times,
sorted) with ``&arrivals=1``; any other ``GET`` answers ``200`` (readiness).

It does a fraction of the work of :mod:`bench.suite.sink` per request (no ASGI, no latency
bookkeeping), so a delivery rate measured against it is the sender's, not the sink's; S8 uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from array import array
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qs, urlsplit

import httptools
import orjson
import uvloop

ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(slots=True)
class Run:
    seen: bytearray = field(default_factory=bytearray)
    arrivals: array[float] = field(default_factory=lambda: array("d"))
    dup: int = 0

    def delivery(self, index: int, at: float) -> None:
        if index >= len(self.seen):
            self.seen.extend(bytes(index + 4096 - len(self.seen)))
        if self.seen[index]:
            self.dup += 1
            return
        self.seen[index] = 1
        self.arrivals.append(at)


class Connection(asyncio.Protocol):
    """One client connection; requests arrive one after another (no pipelining needed)."""

    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.event_id = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(BAD)
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.event_id = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"ce-id":
            self.event_id = value

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() == b"GET":
            body = self._control()
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            self.transport.write(head.encode() + body)
        else:
            run, _, index = self.event_id.decode().rpartition("-")
            if not run or not index.isdigit():
                self.transport.write(BAD)
                self.transport.close()
                return
            found = self.runs.get(run)
            if found is None:
                found = self.runs[run] = Run()
            found.delivery(int(index), time.time())
            self.transport.write(ACCEPTED)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _control(self) -> bytes:
        parts = urlsplit(self.url.decode())
        if parts.path != "/_stats":
            return b"{}"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        run = self.runs.get(query.get("run", ""), Run())
        stats: dict[str, object] = {"deliveries": len(run.arrivals), "dup": run.dup}
        if query.get("arrivals") == "1":
            stats["arrivals"] = sorted(run.arrivals)
        return orjson.dumps(stats)


async def serve(port: int) -> None:
    runs: dict[str, Run] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(runs), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fast counting sink (S8).")
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
