"""PingSource: event shape and catch-up bounds as pure tables, then real ticks into a real sink.

The end-to-end tests run the whole path the control plane uses: manifest -> ``PingSource.plan``
-> :class:`SourceManager` -> :class:`SinkEmitter` -> HTTP -> :class:`RecordingSink`, with a
6-field schedule that fires every second.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import DeliverySpec
from broker.event import Event
from sources.base import Emitter
from sources.emitter import SinkEmitter, log_fallback
from sources.manager import SourceManager, SourcePlan
from sources.ping import PingConfig, missed_ticks, ping_event, rfc3339
from sources.schedule import Schedule, parse_schedule
from tests.sinks import RecordingSink, eventually
from weir.manifests import load_text
from weir.manifests.source_model import PingSource

EVERY_SECOND = parse_schedule("* * * * * *")
SPEC_KEYS = {"specversion", "id", "source", "type", "time"}
FAST = DeliverySpec(retry=2, backoff_delay=0.01, timeout=2.0)


def config(**changes: Any) -> PingConfig:
    fields: dict[str, Any] = {"namespace": "demo", "name": "beat", "schedule": EVERY_SECOND}
    fields.update(changes)
    return PingConfig(**fields)


# -- the event of one tick (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "datacontenttype", "data"),
    [
        ({}, None, None),
        ({"data": b'{"m": 1}', "content_type": "application/json"}, "application/json", b'{"m": 1}'),
        ({"data": b"\x00\xff", "content_type": "application/octet-stream"}, "application/octet-stream",
         b"\x00\xff"),
        ({"data": b"plain"}, None, b"plain"),  # no contentType: no datacontenttype
        ({"content_type": "text/plain"}, None, None),  # no data: no datacontenttype
    ],
)  # fmt: skip
def test_ping_event_shape(changes: dict[str, Any], datacontenttype: str | None, data: bytes | None) -> None:
    at = datetime(2024, 5, 1, 10, 0, 0, 1234, tzinfo=UTC)
    event = ping_event(config(**changes), at=at)
    expected = {
        "specversion": "1.0",
        "id": event.id,
        "source": "/apis/v1/namespaces/demo/pingsources/beat",
        "type": "dev.knative.sources.ping",
        "time": "2024-05-01T10:00:00.001234Z",
    }
    if datacontenttype is not None:
        expected["datacontenttype"] = datacontenttype
    assert dict(event.attributes) == expected
    assert event.data == data
    assert uuid.UUID(event.id).version == 4


def test_every_tick_gets_a_new_id() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    assert len({ping_event(config(), at=at).id for _ in range(50)}) == 50


def test_time_is_rfc3339_utc() -> None:
    moment = datetime.fromisoformat("2024-05-01T12:00:00+02:00")
    assert rfc3339(moment) == "2024-05-01T10:00:00Z"


# -- which missed ticks are replayed (pure) -----------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
MINUTELY = parse_schedule("* * * * *")


@pytest.mark.parametrize(
    ("schedule", "last", "count", "first", "final"),
    [
        (MINUTELY, NOW - timedelta(minutes=10), 10, "11:51:00", "12:00:00"),
        (MINUTELY, NOW - timedelta(seconds=0.4), 0, None, None),
        (MINUTELY, NOW - timedelta(minutes=1), 1, "12:00:00", "12:00:00"),
        (MINUTELY, datetime(2024, 5, 1, 11, 58, tzinfo=UTC), 2, "11:59:00", "12:00:00"),  # (last, now]
        (MINUTELY, NOW - timedelta(hours=5), 100, "10:21:00", "12:00:00"),  # the latest 100
        (EVERY_SECOND, NOW - timedelta(days=3), 100, "11:58:21", "12:00:00"),
        (parse_schedule("0 * * * *"), NOW - timedelta(days=30), 24, "13:00:00", "12:00:00"),  # 24 h
        (parse_schedule("0 0 * * *"), NOW - timedelta(days=30), 1, "00:00:00", "00:00:00"),
        (MINUTELY, NOW, 0, None, None),
    ],
)
def test_missed_ticks(
    schedule: Schedule, last: datetime, count: int, first: str | None, final: str | None
) -> None:
    ticks = missed_ticks(schedule, last, NOW)
    assert len(ticks) == count
    assert ticks == sorted(ticks)
    assert all(last < t <= NOW and NOW - t <= timedelta(hours=24) for t in ticks)
    if ticks:
        assert (ticks[0].strftime("%H:%M:%S"), ticks[-1].strftime("%H:%M:%S")) == (first, final)


def test_missed_ticks_limit_is_adjustable() -> None:
    ticks = missed_ticks(EVERY_SECOND, NOW - timedelta(minutes=1), NOW, limit=3)
    assert [t.strftime("%S") for t in ticks] == ["58", "59", "00"]


# -- real ticks, end to end ---------------------------------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


@pytest.fixture
async def manager() -> AsyncIterator[SourceManager]:
    sender = HttpSender()

    def emitter_for(plan: SourcePlan) -> Emitter:
        assert isinstance(plan.spec, PingConfig)
        overrides = dict(plan.spec.ce_overrides)
        return SinkEmitter(sender=sender, url=plan.sink_uri, overrides=overrides, delivery=FAST,
                           fallback=log_fallback())

    sources = SourceManager(emitter_for=emitter_for)
    yield sources
    await sources.stop()
    await sender.close()


def ping_source(name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> PingSource:
    manifest = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": "demo", "annotations": annotations or {}},
        "spec": {"schedule": "* * * * * *", "sink": {"uri": "http://127.0.0.1:9/unused"}, **spec},
    }
    result = load_text(yaml.safe_dump(manifest), file="ping.yaml")
    assert result.problems == []
    [resource] = result.resources
    assert isinstance(resource, PingSource)
    return resource


def time_of(event: Event) -> datetime:
    return datetime.fromisoformat(str(event.get("time")))


async def test_ticks_every_second_with_the_exact_shape(
    sink: RecordingSink, manager: SourceManager, tmp_path: Path
) -> None:
    json_source = ping_source("json", {
        "contentType": "application/json",
        "data": '{"message": "Hello world!"}',
        "ceOverrides": {"extensions": {"team": "blue", "env": "test"}},
    })  # fmt: skip
    binary_source = ping_source("binary", {
        "contentType": "application/octet-stream",
        "dataBase64": base64.b64encode(b"\x00\x01binary\xff").decode(),
    })  # fmt: skip
    plans = {
        json_source.key: json_source.plan(sink_uri=sink.url_for("/json"), state_dir=tmp_path),
        binary_source.key: binary_source.plan(sink_uri=sink.url_for("/binary"), state_dir=tmp_path),
    }
    started = datetime.now(UTC)
    await manager.apply(plans)
    await sink.wait_for(2, path="/json", timeout=4.0)
    await sink.wait_for(2, path="/binary", timeout=4.0)

    first, second = sink.events("/json")[:2]
    for event in (first, second):
        assert set(event.attributes) == SPEC_KEYS | {"datacontenttype", "team", "env"}
        assert event.specversion == "1.0"
        assert event.type == "dev.knative.sources.ping"
        assert event.source == "/apis/v1/namespaces/demo/pingsources/json"
        assert uuid.UUID(event.id).version == 4
        assert event.get("datacontenttype") == "application/json"
        assert (event.get("team"), event.get("env")) == ("blue", "test")
        assert json.loads(event.data or b"") == {"message": "Hello world!"}
        moment = time_of(event)
        assert moment > started and moment.tzinfo is not None
        assert moment.microsecond < 500_000  # sent at the scheduled whole second, no jitter
    assert first.id != second.id
    assert time_of(second) - time_of(first) >= timedelta(seconds=0.5)

    binary = sink.events("/binary")[0]
    assert set(binary.attributes) == SPEC_KEYS | {"datacontenttype"}
    assert binary.source == "/apis/v1/namespaces/demo/pingsources/binary"
    assert binary.get("datacontenttype") == "application/octet-stream"
    assert binary.data == b"\x00\x01binary\xff"
    request = sink.requests("/binary")[0]
    assert request.headers["ce-type"] == "dev.knative.sources.ping"  # binary content mode

    status = manager.status(json_source.key)
    assert status is not None and status.ready
    assert "nextTick" in status.extra and "lastTick" in status.extra
    # Without the catch-up annotation nothing is persisted.
    assert not (tmp_path / "pingsource.demo.json.json").exists()


def write_state(state_dir: Path, name: str, last: datetime) -> Path:
    path = state_dir / f"pingsource.demo.{name}.json"
    path.write_text(json.dumps({"namespace": "demo", "name": name, "lastTick": rfc3339(last)}))
    return path


async def test_catch_up_fires_missed_ticks_with_their_scheduled_time(
    sink: RecordingSink, manager: SourceManager, tmp_path: Path
) -> None:
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    state = write_state(tmp_path, "catchy", last)
    source = ping_source("catchy", {}, annotations={"weir.dev/catch-up": "true"})
    await manager.apply({source.key: source.plan(sink_uri=sink.url_for("/c"), state_dir=tmp_path)})
    await sink.wait_for(7, path="/c", timeout=4.0)
    times = [time_of(e) for e in sink.events("/c")]
    replayed = [t for t in times if t.microsecond == 0 and t <= last + timedelta(seconds=6)]
    # The missed ticks come first, oldest first, one second apart, starting right after ``last``.
    assert len(replayed) >= 5
    assert times[: len(replayed)] == replayed
    assert replayed == [last + timedelta(seconds=k) for k in range(1, len(replayed) + 1)]
    assert all(t > replayed[-1] for t in times[len(replayed):])

    await manager.stop()
    saved = datetime.fromisoformat(json.loads(state.read_text())["lastTick"])
    assert saved == max(times).replace(microsecond=0)


async def test_without_the_annotation_missed_ticks_are_not_replayed(
    sink: RecordingSink, manager: SourceManager, tmp_path: Path
) -> None:
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    state = write_state(tmp_path, "plain", last)
    before = state.read_text()
    started = datetime.now(UTC)
    source = ping_source("plain", {}, annotations={"weir.dev/catch-up": "false"})
    await manager.apply({source.key: source.plan(sink_uri=sink.url_for("/p"), state_dir=tmp_path)})
    await sink.wait_for(1, path="/p", timeout=3.0)
    assert all(time_of(e) > started for e in sink.events("/p"))
    await manager.stop()
    assert state.read_text() == before


async def test_catch_up_without_state_starts_fresh(
    sink: RecordingSink, manager: SourceManager, tmp_path: Path
) -> None:
    started = datetime.now(UTC)
    source = ping_source("fresh", {}, annotations={"weir.dev/catch-up": "true"})
    await manager.apply({source.key: source.plan(sink_uri=sink.url_for("/f"), state_dir=tmp_path)})
    await sink.wait_for(1, path="/f", timeout=3.0)
    assert all(time_of(e) > started for e in sink.events("/f"))
    state = tmp_path / "pingsource.demo.fresh.json"
    await eventually(state.exists, what="the state file")
    assert json.loads(state.read_text())["namespace"] == "demo"
