"""HttpSender against a real loopback sink: content modes, headers, status passthrough, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from broker.delivery.http_sender import HttpSender
from broker.errors import BadResponse, TransportError
from broker.event import Event
from tests.sinks import RecordingSink, Reply, unused_url

EVENT = Event(
    {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/orders",
        "type": "order.created",
        "datacontenttype": "application/json",
        "subject": "caf\u00e9 order",
        "partitionkey": "p1",
    },
    b'{"total":12}',
)
NO_CONTENT_TYPE = Event({"specversion": "1.0", "id": "e-2", "source": "/s", "type": "raw"}, b"\x00\x01bytes")


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as server:
        yield server


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    client = HttpSender(limit=8)
    yield client
    await client.close()


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
async def test_event_arrives_intact(sink: RecordingSink, sender: HttpSender, structured: bool) -> None:
    response = await sender.send(
        sink.url_for("/in"), EVENT, structured=structured,
        headers={"Prefer": "reply", "Kn-Namespace": "team-a"},
    )
    assert response.status == 202
    [request] = sink.requests("/in")
    assert request.method == "POST"
    assert request.event == EVENT
    assert request.headers["prefer"] == "reply"
    assert request.headers["kn-namespace"] == "team-a"
    if structured:
        assert request.headers["content-type"].startswith("application/cloudevents+json")
        assert "ce-id" not in request.headers
    else:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["ce-id"] == "e-1"
        assert request.body == b'{"total":12}'


async def test_binary_without_datacontenttype_sends_no_content_type(
    sink: RecordingSink, sender: HttpSender
) -> None:
    await sender.send(sink.url_for("/raw"), NO_CONTENT_TYPE)
    [request] = sink.requests("/raw")
    assert "content-type" not in request.headers
    assert request.event == NO_CONTENT_TYPE
    assert "prefer" not in request.headers


async def test_one_event_sent_twice_carries_only_each_sends_headers(
    sink: RecordingSink, sender: HttpSender
) -> None:
    # The binary encoding is worked out once per event and shared; a send's own headers must
    # not leak into it.
    await sender.send(sink.url_for("/a"), EVENT, headers={"Kn-Namespace": "team-a"})
    await sender.send(sink.url_for("/b"), EVENT)
    [first], [second] = sink.requests("/a"), sink.requests("/b")
    assert first.headers["kn-namespace"] == "team-a"
    assert "kn-namespace" not in second.headers
    assert first.event == second.event == EVENT


@pytest.mark.parametrize("status", [200, 204, 400, 404, 429, 500, 503])
async def test_statuses_are_returned_not_raised(sink: RecordingSink, sender: HttpSender, status: int) -> None:
    sink.script("/s", Reply(status=status, headers={"Retry-After": "3", "X-Thing": "v"}, body=b"why"))
    response = await sender.send(sink.url_for("/s"), EVENT)
    assert response.status == status
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-thing"] == "v"
    assert response.body == (b"" if status == 204 else b"why")


async def test_reply_event_is_returned_as_is(sink: RecordingSink, sender: HttpSender) -> None:
    reply = Event({"specversion": "1.0", "id": "r-1", "source": "/svc", "type": "receipt"}, None)
    sink.script("/r", Reply(event=reply))
    response = await sender.send(sink.url_for("/r"), EVENT)
    assert response.status == 200
    assert response.headers["ce-id"] == "r-1"


async def test_timeout_is_a_transport_error(sink: RecordingSink, sender: HttpSender) -> None:
    sink.script("/slow", Reply(delay=2.0))
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        await sender.send(sink.url_for("/slow"), EVENT, timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert info.value.retriable
    assert info.value.status is None
    assert "timeout" in str(info.value)
    assert info.value.body == str(info.value).encode()


async def test_requests_beyond_the_limit_wait_their_turn_outside_the_timeout(sink: RecordingSink) -> None:
    sink.script("/slow", Reply(delay=0.6))
    client = HttpSender(limit=1)
    try:
        slow = asyncio.create_task(client.send(sink.url_for("/slow"), EVENT, timeout=5.0))
        await _until(lambda: sink.requests("/slow"))
        # Waits about 0.6 s for the only slot; its 0.4 s bound starts once it has it.
        started = time.monotonic()
        queued = await client.send(sink.url_for("/fast"), EVENT, timeout=0.4)
        assert queued.status == 202
        assert time.monotonic() - started > 0.4
        assert (await slow).status == 202
        [request] = sink.requests("/fast")
        assert request.event == EVENT
    finally:
        await client.close()


async def _until(ready: Callable[[], object], deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not ready():
        assert time.monotonic() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.01)


async def test_default_timeout_applies(sink: RecordingSink) -> None:
    sink.script("/slow", Reply(delay=2.0))
    client = HttpSender(default_timeout=0.2)
    try:
        with pytest.raises(TransportError, match="timeout"):
            await client.send(sink.url_for("/slow"), EVENT)
    finally:
        await client.close()


async def test_connection_refused_is_a_transport_error(sender: HttpSender) -> None:
    url = unused_url("/gone")
    with pytest.raises(TransportError) as info:
        await sender.send(url, EVENT, timeout=2.0)
    assert info.value.retriable
    assert str(info.value).startswith(f"connection refused to {url}")


async def test_oversized_reply_is_a_bad_response(sink: RecordingSink) -> None:
    big = Event({"specversion": "1.0", "id": "r", "source": "/s", "type": "t"}, b"x" * 5000)
    sink.script("/big", Reply(event=big), Reply(status=500, body=b"y" * 5000))
    client = HttpSender(max_response_bytes=1000)
    try:
        with pytest.raises(BadResponse) as info:
            await client.send(sink.url_for("/big"), EVENT)
        assert not info.value.retriable
        # A large body that is not a reply is only truncated.
        response = await client.send(sink.url_for("/big"), EVENT)
        assert response.status == 500
        assert response.body == b"y" * 1000
    finally:
        await client.close()


async def test_redirects_are_not_followed(sink: RecordingSink, sender: HttpSender) -> None:
    sink.script("/moved", Reply(status=307, headers={"Location": sink.url_for("/other")}))
    response = await sender.send(sink.url_for("/moved"), EVENT)
    assert response.status == 307
    assert sink.requests("/other") == []


async def test_session_is_reused_and_reopened_after_close(sink: RecordingSink, sender: HttpSender) -> None:
    for _ in range(3):
        await sender.send(sink.url_for("/k"), EVENT)
    await sender.close()
    assert (await sender.send(sink.url_for("/k"), EVENT)).status == 202
    assert len(sink.requests("/k")) == 4
