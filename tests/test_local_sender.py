"""Events for this Weir's own Brokers skip HTTP but are answered as the ingress would answer."""

from __future__ import annotations

import pytest

from broker.delivery.http_sender import HttpSender
from broker.event import TTL, Event
from broker.ingest import Ingest
from broker.store.memory import MemoryStore
from tests.sinks import RecordingSink
from weir.sinks import LocalSender, SinkRegistry

BASE = "http://127.0.0.1:8080"


class Brokers:
    def log_for(self, namespace: str, name: str) -> str | None:
        return f"{namespace}/{name}" if (namespace, name) == ("default", "default") else None


def event(**extra: str | int) -> Event:
    return Event({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **extra}, b"x")


@pytest.mark.parametrize(
    ("url", "sent", "full", "status", "stored"),
    [
        (f"{BASE}/default/default", event(), False, 202, 1),
        (f"{BASE}/default/default/", event(), False, 202, 1),
        (f"{BASE}/default/default", event(**{TTL: 0}), False, 400, 0),
        (f"{BASE}/default/default", event(), True, 503, 0),
    ],
    ids=["accepted", "trailing-slash", "ttl-exhausted", "store-full"],
)
async def test_own_broker_is_fed_in_process(
    url: str, sent: Event, full: bool, status: int, stored: int
) -> None:
    store = MemoryStore(max_events=0 if full else None)
    await store.open()
    sender = LocalSender(HttpSender(), SinkRegistry(BASE))
    sender.serve_brokers(BASE, Brokers(), Ingest(store))
    try:
        response = await sender.send(url, sent)
    finally:
        await sender.close()
    assert response.status == status
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1
    entries = await store.read("default/default", 0, 10)
    assert len(entries) == stored
    if stored:
        assert entries[0].event.get(TTL) == 255


async def test_other_urls_still_go_over_http() -> None:
    """An unknown Broker path on this Weir's address, or any other URL, is a real POST."""
    async with RecordingSink() as sink:
        sender = LocalSender(HttpSender(), SinkRegistry(BASE))
        sender.serve_brokers(sink.url_for("/"), Brokers(), Ingest(MemoryStore()))
        try:
            response = await sender.send(sink.url_for("/default/other"), event())
        finally:
            await sender.close()
        assert response.status == 202
        assert len(sink.requests("/default/other")) == 1
