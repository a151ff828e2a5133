"""SinkEmitter against real HTTP sinks: overrides, retries, dead-letter sink, fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from broker.delivery.attempts import backoff
from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import DeliverySpec
from broker.errors import BadResponse, DeliveryError, InvalidEvent, RetriableResponse, TransportError
from broker.event import Event
from sources.emitter import SOURCE_DEFAULT_DELIVERY, SinkEmitter, log_fallback
from tests.sinks import RecordingSink, Reply, unused_url

FAST = DeliverySpec(retry=3, backoff_policy="exponential", backoff_delay=0.01, timeout=2.0)
EVENT = Event(
    {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t", "datacontenttype": "text/plain"},
    b"hello",
)


class Fallen:
    """A fallback that remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Event, DeliveryError]] = []

    async def __call__(self, event: Event, error: DeliveryError) -> None:
        self.calls.append((event, error))



@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


def test_default_delivery_is_knatives_adapter_policy() -> None:
    assert SOURCE_DEFAULT_DELIVERY.retry == 5
    waits = [backoff(SOURCE_DEFAULT_DELIVERY, k) for k in range(1, 6)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert SOURCE_DEFAULT_DELIVERY.timeout == 30.0


async def test_accepted_with_overrides_in_binary_mode(sender: HttpSender, sink: RecordingSink) -> None:
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), overrides={"team": "blue", "tier": "1"},
                          delivery=FAST, fallback=fallen)
    assert await emitter.emit(EVENT) is True
    [request] = sink.requests("/in")
    assert request.headers["ce-team"] == "blue" and request.headers["ce-tier"] == "1"
    assert request.headers["content-type"] == "text/plain"
    assert request.event is not None
    assert dict(request.event.attributes) == {**EVENT.attributes, "team": "blue", "tier": "1"}
    assert request.event.data == b"hello"
    assert fallen.calls == []


async def test_override_replaces_an_existing_extension(sender: HttpSender, sink: RecordingSink) -> None:
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), overrides={"team": "blue"}, delivery=FAST,
                          fallback=Fallen())
    assert await emitter.emit(EVENT.with_attributes({"team": "red"}))
    assert sink.events("/in")[0].get("team") == "blue"


async def test_structured_when_delivery_says_json(sender: HttpSender, sink: RecordingSink) -> None:
    spec = DeliverySpec(retry=0, structured=True)
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), delivery=spec, fallback=Fallen())
    assert await emitter.emit(EVENT)
    [request] = sink.requests("/in")
    assert request.headers["content-type"].startswith("application/cloudevents+json")


async def test_a_reply_is_ignored(sender: HttpSender, sink: RecordingSink) -> None:
    reply = Event({"specversion": "1.0", "id": "r", "source": "/r", "type": "reply"}, None)
    sink.script("/in", then=Reply(event=reply))
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), delivery=FAST, fallback=fallen)
    assert await emitter.emit(EVENT) is True
    assert len(sink.requests("/in")) == 1 and fallen.calls == []


async def test_retries_on_503_then_succeeds(sender: HttpSender, sink: RecordingSink) -> None:
    sink.script("/in", Reply(status=503), Reply(status=503))
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), delivery=FAST, fallback=fallen)
    assert await emitter.emit(EVENT) is True
    requests = sink.requests("/in")
    assert len(requests) == 3
    assert {r.event.id for r in requests if r.event} == {"e-1"}
    assert requests[2].at - requests[1].at >= 0.02 * 0.9  # the second wait doubled
    assert fallen.calls == []


@pytest.mark.parametrize(
    ("status", "attempts", "error_type"),
    [(503, 4, RetriableResponse), (500, 4, RetriableResponse), (429, 4, RetriableResponse),
     (400, 1, BadResponse), (401, 1, BadResponse), (302, 1, BadResponse)],
)  # fmt: skip
async def test_final_failure_calls_the_fallback(
    sender: HttpSender, sink: RecordingSink, status: int, attempts: int, error_type: type[DeliveryError]
) -> None:
    sink.script("/in", then=Reply(status=status, body=b"nope"))
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), overrides={"team": "blue"}, delivery=FAST,
                          fallback=fallen)
    assert await emitter.emit(EVENT) is False
    assert len(sink.requests("/in")) == attempts
    [(event, error)] = fallen.calls
    assert event.id == "e-1" and event.get("team") == "blue"  # recorded as it was sent
    assert isinstance(error, error_type)
    assert error.status == status and error.body == b"nope"


async def test_unreachable_sink(sender: HttpSender) -> None:
    fallen = Fallen()
    url = unused_url("/in")
    emitter = SinkEmitter(sender=sender, url=url, delivery=FAST, fallback=fallen)
    assert await emitter.emit(EVENT) is False
    [(event, error)] = fallen.calls
    assert event == EVENT
    assert isinstance(error, TransportError) and error.status is None
    assert "connection refused" in str(error)


async def test_dead_letter_sink_gets_the_event_with_error_extensions(
    sender: HttpSender, sink: RecordingSink
) -> None:
    sink.script("/in", then=Reply(status=500, body=b"boom"))
    spec = DeliverySpec(retry=1, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), delivery=spec, fallback=fallen)
    assert await emitter.emit(EVENT) is False
    [letter] = sink.events("/dls")
    assert letter.id == "e-1" and letter.data == b"hello"
    assert letter.get("knativeerrordest") == sink.url_for("/in")
    assert letter.get("knativeerrorcode") == "500"
    assert letter.get("knativeerrordata") == "Ym9vbQ=="
    assert fallen.calls == []


async def test_fallback_when_the_dead_letter_sink_fails_too(sender: HttpSender, sink: RecordingSink) -> None:
    sink.script("/in", then=Reply(status=500))
    sink.script("/dls", then=Reply(status=500))
    spec = DeliverySpec(retry=1, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    fallen = Fallen()
    emitter = SinkEmitter(sender=sender, url=sink.url_for("/in"), delivery=spec, fallback=fallen)
    assert await emitter.emit(EVENT) is False
    assert len(sink.requests("/dls")) == 2
    [(event, error)] = fallen.calls
    assert event == EVENT and error.status == 500  # the sink's error, not the dead-letter sink's


async def test_a_failing_fallback_is_logged_with_the_full_event(
    sender: HttpSender, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: Event, error: DeliveryError) -> None:
        raise RuntimeError("store is gone")

    emitter = SinkEmitter(sender=sender, url=unused_url(), delivery=DeliverySpec(retry=0), fallback=broken)
    with caplog.at_level(logging.ERROR, logger="weir.sources"):
        assert await emitter.emit(EVENT) is False
    [record] = [r for r in caplog.records if "full event" in r.getMessage()]
    assert '"id":"e-1"' in record.getMessage() and '"data":"hello"' in record.getMessage()


async def test_log_fallback_logs_the_full_event(sender: HttpSender, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("weir.sources.test")
    emitter = SinkEmitter(sender=sender, url=unused_url(), delivery=DeliverySpec(retry=0),
                          fallback=log_fallback(logger))
    with caplog.at_level(logging.ERROR, logger="weir.sources.test"):
        assert await emitter.emit(EVENT) is False
    [record] = [r for r in caplog.records if r.name == "weir.sources.test"]
    message = record.getMessage()
    assert "e-1" in message and "connection refused" in message and '"data":"hello"' in message


@pytest.mark.parametrize(
    ("name", "message"),
    [("type", "context attribute 'type'"), ("id", "context attribute 'id'"), ("time", "context attribute"),
     ("datacontenttype", "context attribute"), ("data", "reserved"), ("Team", "invalid"),
     ("my-ext", "invalid")],
)  # fmt: skip
def test_overrides_cannot_set_context_attributes(sender: HttpSender, name: str, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        SinkEmitter(sender=sender, url="http://127.0.0.1:9/", overrides={name: "x"}, fallback=Fallen())
