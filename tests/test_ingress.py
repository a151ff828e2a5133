"""Broker ingress under a real uvicorn server: status rules and what reaches the store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import uvicorn

from broker.event import Event
from broker.ingest import Ingest
from broker.ingress import IngressApp
from broker.store.memory import MemoryStore

MAX_BYTES = 64 * 1024
LOG = "demo/default"
BASE = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "com.example.order.created"}
BINARY = {f"ce-{k}": v for k, v in BASE.items()}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


class Directory:
    """Brokers ``demo/default`` and ``demo/other``; namespace ``boom`` fails unexpectedly."""

    def log_for(self, namespace: str, name: str) -> str | None:
        if namespace == "boom":
            raise RuntimeError("directory exploded")
        if namespace == "demo" and name in ("default", "other"):
            return f"{namespace}/{name}"
        return None


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: it runs inside the test loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(slots=True)
class Ingress:
    url: str
    store: MemoryStore
    seen: int = field(default=0)

    async def stored(self) -> list[Event]:
        """Events appended to ``demo/default`` since the previous call."""
        entries = await self.store.read(LOG, self.seen, 1_000_000)
        if entries:
            self.seen = entries[-1].seq
        return [e.event for e in entries]


@contextlib.asynccontextmanager
async def serve(app: IngressApp) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 5
    while not server.started:
        assert not task.done(), "uvicorn stopped during startup"
        assert time.monotonic() < deadline, "uvicorn did not start within 5 s"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture(scope="session")
async def ingress() -> AsyncIterator[Ingress]:
    store = MemoryStore()
    await store.open()
    app = IngressApp(ingest=Ingest(store), directory=Directory(), max_event_bytes=MAX_BYTES)
    async with serve(app) as url:
        yield Ingress(url=url, store=store)
    await store.close()


@pytest.fixture(scope="session")
async def full_ingress() -> AsyncIterator[str]:
    store = MemoryStore(max_events=1)
    await store.open()
    await store.append(LOG, [Event(dict(BASE))])
    app = IngressApp(ingest=Ingest(store), directory=Directory())
    async with serve(app) as url:
        yield url
    await store.close()


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str


async def call(
    client: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    body: Any = b"",
) -> Answer:
    # aiohttp would otherwise add Content-Type: application/octet-stream, which is datacontenttype.
    skip = () if "content-type" in dict(headers) else ("Content-Type",)
    async with client.request(method, url, headers=headers, data=body, skip_auto_headers=skip) as resp:
        return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.text())


# --- status rules (Knative data-plane §2.H scenarios A-H; batch is accepted by Weir) --------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    status: int
    says: str = ""
    """Text the answer's body must contain."""
    method: str = "POST"
    path: str = "/demo/default"
    headers: Any = field(default_factory=lambda: BINARY)
    body: Any = b""
    stored: int = -1
    """Events the request adds to the store; by default 1 for 202, else 0."""


def structured(obj: Any) -> dict[str, Any]:
    return {"headers": STRUCTURED, "body": orjson.dumps(obj)}


NO_ID = {k: v for k, v in BINARY.items() if k != "ce-id"}
CASES = [
    Case(name="A structured 1.0", status=202, **structured(BASE)),
    Case(name="B binary", status=202),
    Case(name="C 0.3 binary", status=202, headers={**BINARY, "ce-specversion": "0.3"}),
    Case(name="C 0.3 structured", status=202, **structured({**BASE, "specversion": "0.3"})),
    Case(name="trailing slash", status=202, path="/demo/default/"),
    Case(name="D missing id", status=400, says="missing required attribute 'id'", headers=NO_ID),
    Case(
        name="D null type",
        status=400,
        says="'type' must be a string, got null",
        **structured({**BASE, "type": None}),
    ),
    Case(name="E garbage", status=400, says="body is not valid JSON", headers=STRUCTURED, body=b"{no"),
    Case(name="F batch", status=202, headers=BATCH, body=orjson.dumps([BASE, BASE]), stored=2),
    Case(
        name="F bad element",
        status=400,
        says="batch[1]: missing",
        headers=BATCH,
        body=orjson.dumps([BASE, {}]),
    ),
    Case(name="F empty batch", status=400, says="the batch is empty", headers=BATCH, body=b"[]"),
    Case(
        name="avro",
        status=400,
        says="unsupported event format",
        headers={"content-type": "application/cloudevents+avro"},
    ),
    Case(
        name="bad UTF-8",
        status=400,
        says="header ce-subject: invalid UTF-8",
        headers={**BINARY, "ce-subject": "%C0%A0"},
    ),
    Case(name="bad name", status=400, says="'my-ext'", headers={**BINARY, "ce-my-ext": "x"}),
    Case(
        name="repeated ce-id",
        status=400,
        says="header ce-id appears more than once",
        headers=[*BINARY.items(), ("ce-id", "2")],
    ),
    Case(
        name="TTL exhausted",
        status=400,
        says="knativebrokerttl is 0",
        headers={**BINARY, "ce-knativebrokerttl": "0"},
    ),
    Case(
        name="TTL invalid",
        status=400,
        says="must be an integer",
        headers={**BINARY, "ce-knativebrokerttl": "many"},
    ),
    Case(name="G GET", status=405, says="method GET not allowed", method="GET"),
    Case(name="G PUT", status=405, says="method PUT not allowed", method="PUT"),
    Case(name="G DELETE", status=405, method="DELETE"),
    Case(name="G HEAD", status=405, method="HEAD"),
    Case(name="H unknown broker", status=404, says="Broker demo/unknown not found", path="/demo/unknown"),
    Case(name="H root", status=404, path="/"),
    Case(
        name="H three segments",
        status=400,
        says="path must be /<namespace>/<broker>, got '/a/b/c'",
        path="/a/b/c",
    ),
    Case(name="H one segment", status=400, says="path must be", path="/demo"),
    Case(name="H empty segment", status=400, says="path must be", path="/demo//"),
    Case(name="too large", status=413, says=f"limit of {MAX_BYTES} bytes", body=b"x" * (MAX_BYTES + 1)),
    Case(name="unexpected error", status=500, says="internal error", path="/boom/default"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_status_rules(ingress: Ingress, client: aiohttp.ClientSession, case: Case) -> None:
    await ingress.stored()
    answer = await call(
        client, ingress.url + case.path, method=case.method, headers=case.headers, body=case.body
    )
    assert answer.status == case.status, answer.text
    assert case.says in answer.text
    if case.status == 405:
        assert answer.headers["allow"] == "POST, OPTIONS"
    if case.status >= 400 and case.method != "HEAD":
        assert answer.headers["content-type"].startswith("text/plain")
    stored = case.stored if case.stored >= 0 else int(case.status == 202)
    assert len(await ingress.stored()) == stored


async def test_options_answers_the_webhook_handshake(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    answer = await call(
        client,
        ingress.url + "/demo/default",
        method="OPTIONS",
        headers={"WebHook-Request-Origin": "example.com"},
    )
    assert answer.status == 200
    assert answer.headers["allow"] == "POST, OPTIONS"
    assert answer.headers["webhook-allowed-origin"] == "*"
    assert answer.headers["webhook-allowed-rate"] == "*"


async def test_body_too_large_while_streaming(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * (MAX_BYTES // 2)

    answer = await call(client, ingress.url + "/demo/default", headers=STRUCTURED, body=chunks())
    assert answer.status == 413 and f"exceeds the limit of {MAX_BYTES} bytes" in answer.text
    assert await ingress.stored() == []


async def test_store_full_is_503_with_retry_after(full_ingress: str, client: aiohttp.ClientSession) -> None:
    answer = await call(client, full_ingress + "/demo/default", headers=BINARY)
    assert answer.status == 503
    assert answer.headers["retry-after"] == "1"
    assert "at most 1 events" in answer.text


# --- what is stored -----------------------------------------------------------------------------


async def test_binary_event_is_stored_faithfully(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    data = os.urandom(1024)
    headers = {**BINARY, "ce-subject": "Euro%20%E2%82%AC", "ce-tenant": "acme", "content-type": "image/png"}
    await ingress.stored()
    assert (await call(client, ingress.url + "/demo/default", headers=headers, body=data)).status == 202
    [event] = await ingress.stored()
    assert event.data == data
    assert {k: v for k, v in event.attributes.items() if not k.startswith("knative")} == {
        **BASE,
        "subject": "Euro €",
        "tenant": "acme",
        "datacontenttype": "image/png",
    }
    assert event.get("knativebrokerttl") == 255
    arrival = event.text("knativearrivaltime")
    assert arrival is not None and arrival.endswith("Z")


async def test_structured_event_keeps_types_and_ttl(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    body = orjson.dumps({**BASE, "count": 3, "flag": True, "knativebrokerttl": 7, "data": {"a": 1}})
    await ingress.stored()
    assert (await call(client, ingress.url + "/demo/default", headers=STRUCTURED, body=body)).status == 202
    [event] = await ingress.stored()
    assert (event.get("count"), event.get("flag"), event.get("knativebrokerttl")) == (3, True, 7)
    assert event.data == b'{"a":1}'
    assert event.get("knativearrivaltime") is not None


async def test_batch_is_stored_in_order(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    body = orjson.dumps([{**BASE, "id": str(i), "data_base64": "AAE="} for i in range(5)])
    await ingress.stored()
    assert (await call(client, ingress.url + "/demo/default", headers=BATCH, body=body)).status == 202
    events = await ingress.stored()
    assert [(e.id, e.data) for e in events] == [(str(i), b"\x00\x01") for i in range(5)]


async def test_no_data_without_body_or_content_type(ingress: Ingress, client: aiohttp.ClientSession) -> None:
    await ingress.stored()
    assert (await call(client, ingress.url + "/demo/default", headers=BINARY, body=None)).status == 202
    [event] = await ingress.stored()
    assert event.data is None and event.get("datacontenttype") is None
