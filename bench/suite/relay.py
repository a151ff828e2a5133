"""Baseline B2: the least a durable relay must do, on the embedded store.

``python -m bench.suite.relay --port P --sink URL [--db PATH | --memory] [--fanout N]``

Ingress is a raw ASGI handler: it keeps the body and the ``ce-*`` headers, appends them to the log
and answers ``202`` once the append is durable. The log is SQLite in WAL mode with
``synchronous=FULL`` (every commit fsynced) written by one thread with group commit: appends that
arrive while a commit runs go into the next one. A dispatcher task reads new rows after its
cursor and POSTs each with aiohttp (binary mode, up to 256 POSTs in flight, one keep-alive pool
of 256 connections). No parsing, filtering, retries, per-delivery progress or pruning: that is the
work Weir adds on top. ``--memory`` keeps the log in a list instead (the baseline for
``--backend memory``).

``--fanout N`` POSTs every row to N sink URLs (``{k}`` in the sink URL is replaced by 0..N-1),
the same headers and body to each, each POST taking its own place in the 256-POST window. (With
a window of 256 rows instead, up to 256·N requests waited in aiohttp's pool, and B2 spent 765 µs
of CPU per delivery at N = 50 against 166 this way.) It is the bare counterpart of N matching
Triggers: the log still holds one row per event.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson
import uvicorn

from bench.suite.sink import Receive, Scope, Send, answer_empty, cloudevent_headers, read_body

Row = tuple[int, bytes, bytes]


class Relay:
    def __init__(self, sinks: list[str], db: str | None) -> None:
        self.sinks = sinks
        self.db = db
        self.rows: list[Row] = []  # the --memory log
        self.appends: queue.SimpleQueue[tuple[bytes, bytes, asyncio.Future[None]]] = queue.SimpleQueue()
        self.reader = ThreadPoolExecutor(1)
        self.wake = asyncio.Event()
        self.started = False

    def _start(self) -> None:
        self.started = True
        self.loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        if self.db is not None:
            setup = sqlite3.connect(self.db)
            setup.execute("PRAGMA journal_mode=WAL")
            setup.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, headers BLOB, body BLOB)")
            setup.commit()
            setup.close()
            self.read_conn = sqlite3.connect(self.db, check_same_thread=False)
            threading.Thread(target=self._writer, daemon=True).start()
        self.loop.create_task(self._dispatch())

    def _writer(self) -> None:
        conn = sqlite3.connect(self.db or "", isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        while True:
            batch = [self.appends.get()]
            while not self.appends.empty():
                batch.append(self.appends.get_nowait())
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log (headers, body) VALUES (?, ?)", [(h, b) for h, b, _ in batch])
            conn.execute("COMMIT")
            self.loop.call_soon_threadsafe(self._committed, [f for _, _, f in batch])

    def _committed(self, futures: list[asyncio.Future[None]]) -> None:
        for future in futures:
            future.set_result(None)
        self.wake.set()

    def _read(self, after: int) -> list[Row]:
        if self.db is None:
            return self.rows[after : after + 256]
        sql = "SELECT seq, headers, body FROM log WHERE seq > ? ORDER BY seq LIMIT 256"
        return list(self.read_conn.execute(sql, (after,)))

    async def _dispatch(self) -> None:
        cursor = 0
        window = asyncio.Semaphore(256)
        while True:
            await self.wake.wait()
            self.wake.clear()
            while rows := await self._next(cursor):
                cursor = rows[-1][0]
                for _, headers, body in rows:
                    fields = orjson.loads(headers)
                    for url in self.sinks:
                        await window.acquire()
                        task = self.loop.create_task(self._post(url, fields, body))
                        task.add_done_callback(lambda _: window.release())

    async def _next(self, after: int) -> list[Row]:
        if self.db is None:
            return self._read(after)
        return await self.loop.run_in_executor(self.reader, self._read, after)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> None:
        async with self.session.post(url, data=body, headers=headers) as response:
            await response.read()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self.started:
            self._start()
        body = await read_body(receive)
        if scope["method"] == "POST":
            headers = orjson.dumps({k.decode(): v.decode() for k, v in cloudevent_headers(scope)})
            if self.db is None:
                self.rows.append((len(self.rows) + 1, headers, body))
                self.wake.set()
            else:
                done = self.loop.create_future()
                self.appends.put((headers, body, done))
                await done
        await answer_empty(send, 202 if scope["method"] == "POST" else 200)


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare durable relay (baseline B2).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", required=True, help="sink URL; {k} is replaced by 0..N-1 with --fanout N")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db")
    where.add_argument("--memory", action="store_true")
    parser.add_argument("--fanout", type=int, default=1)
    args = parser.parse_args()
    sinks = [args.sink.replace("{k}", str(k)) for k in range(args.fanout)]
    app = Relay(sinks, None if args.memory else args.db)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
