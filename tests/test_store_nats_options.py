"""The NATS store's ``retention``, ``dead_retention`` and ``create`` parameters.

Parsing is checked on its own; the rest runs against the session's nats-server, each test under
its own prefix (from its ``tmp_path``), reading the streams' settings back with stream info.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from broker.errors import StoreError
from broker.store.nats import NatsStore, nats_store_from_url
from broker.store.nats_names import Names
from tests.store_contract import LOG, event, eventually, prefix_for

OTHER_LOG = "ns/other"


def prefix_of(place: Path) -> str:
    return prefix_for(place, "o")



def store(nats_url: str, place: Path, query: str = "") -> NatsStore:
    return nats_store_from_url(f"{nats_url}?prefix={prefix_of(place)}&lease_ttl=2&claim_lease=2{query}")


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"retention": None, "dead_retention": None, "create": True}),
        ("retention=3600", {"retention": 3600.0, "dead_retention": None, "create": True}),
        ("retention=0.5&dead_retention=604800", {"retention": 0.5, "dead_retention": 604800.0}),
        ("create=false", {"create": False}),
        ("create=FALSE", {"create": False}),
        ("create=true", {"create": True}),
    ],
)
def test_url_parameters(query: str, expected: dict[str, object]) -> None:
    config = nats_store_from_url(f"nats://h:1?{query}").config
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("retention=-1", "retention"),
        ("retention=0", "retention"),
        ("retention=soon", "retention"),
        ("retention=inf", "retention"),
        ("retention=nan", "retention"),
        ("retention=", "retention"),
        ("dead_retention=-5", "dead_retention"),
        ("dead_retention=0", "dead_retention"),
        ("create=maybe", "create"),
        ("create=1", "create"),
        ("create=", "create"),
    ],
)
def test_invalid_values_name_the_parameter(query: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        nats_store_from_url(f"nats://h:1?{query}")


# --- retention --------------------------------------------------------------------------------


async def test_created_streams_carry_the_retention(
    nats_url: str, tmp_path: Path, js: JetStreamContext
) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(nats_url, tmp_path, "&retention=3600&dead_retention=86400")
    await s.open()
    try:
        await s.append(LOG, [event(1)])  # creates the log's stream
    finally:
        await s.close()
    log_stream = await js.stream_info(names.log_stream(LOG))
    deliveries = await js.stream_info(names.deliveries_stream)
    dead = await js.stream_info(names.dead_stream)
    assert (log_stream.config.max_age, deliveries.config.max_age, dead.config.max_age) == (3600, 3600, 86400)


async def test_without_retention_streams_keep_messages_until_consumed(
    nats_url: str, tmp_path: Path, js: JetStreamContext
) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(nats_url, tmp_path)
    await s.open()
    try:
        await s.append(LOG, [event(1)])
    finally:
        await s.close()
    for stream in (names.log_stream(LOG), names.deliveries_stream, names.dead_stream):
        assert not (await js.stream_info(stream)).config.max_age


async def test_a_retention_below_the_duplicate_window_shortens_the_window(
    nats_url: str, tmp_path: Path, js: JetStreamContext
) -> None:
    # The server refuses a deduplication window longer than max_age.
    names = Names(prefix_of(tmp_path))
    s = store(nats_url, tmp_path, "&retention=30&dead_retention=10&duplicate_window=120")
    await s.open()
    await s.close()
    deliveries = (await js.stream_info(names.deliveries_stream)).config
    dead = (await js.stream_info(names.dead_stream)).config
    assert (deliveries.max_age, deliveries.duplicate_window) == (30, 30)
    assert (dead.max_age, dead.duplicate_window) == (10, 10)


async def test_an_event_older_than_the_retention_is_dropped_even_if_not_delivered(
    nats_url: str, tmp_path: Path
) -> None:
    s = store(nats_url, tmp_path, "&retention=0.3")
    await s.open()
    try:
        await s.append(LOG, [event(1), event(2)])
        first, second = await s.read(LOG, 0, 10)
        await s.route(LOG, first.seq, [(first.seq, "ns/t")])  # e2 stays unrouted in the log
        assert (await s.stats()).pending == 1
        await eventually(_empty(s))
        assert await s.claim("ns/t", 10) == []
        assert await s.read(LOG, first.seq, 10) == []
        await s.append(LOG, [event(3)])  # the log goes on after the gap
        assert [e.event.id for e in await s.read(LOG, first.seq, 10)] == ["e3"]
    finally:
        await s.close()


def _empty(s: NatsStore) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await s.stats()
        return stats.pending == 0 and stats.events == 0

    return check


# --- create=false ------------------------------------------------------------------------------


async def test_create_false_fails_on_an_empty_server_naming_what_is_missing(
    nats_url: str, tmp_path: Path, js: JetStreamContext
) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(nats_url, tmp_path, "&create=false")
    with pytest.raises(StoreError) as info:
        await s.open()
    assert not info.value.retriable
    message = str(info.value)
    for name in (names.deliveries_stream, names.dead_stream, names.cursors_bucket, names.leases_bucket):
        assert name in message
    assert "create=true" in message
    with pytest.raises(nats.js.errors.NotFoundError):  # nothing was created
        await js.stream_info(names.deliveries_stream)


async def test_create_false_uses_what_a_creating_store_set_up(
    nats_url: str, tmp_path: Path, js: JetStreamContext
) -> None:
    names = Names(prefix_of(tmp_path))
    creator = store(nats_url, tmp_path)
    await creator.open()
    await creator.append(LOG, [event(1)])
    await creator.close()
    s = store(nats_url, tmp_path, "&create=false")
    await s.open()
    try:
        await s.append(LOG, [event(2)])
        assert [e.event.id for e in await s.read(LOG, 0, 10)] == ["e1", "e2"]
        # A log whose stream does not exist: the first append names it and creates nothing.
        with pytest.raises(StoreError) as info:
            await s.append(OTHER_LOG, [event(3)])
        assert not info.value.retriable
        assert names.log_stream(OTHER_LOG) in str(info.value) and "create=true" in str(info.value)
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(names.log_stream(OTHER_LOG))
        assert await s.head(OTHER_LOG) == 0
    finally:
        await s.close()


def test_weir_run_reports_missing_streams_and_exits(nats_url: str, tmp_path: Path) -> None:
    names = Names(prefix_of(tmp_path))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    url = f"{nats_url}?prefix={prefix_of(tmp_path)}&create=false"
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from weir.cli import main; sys.exit(main())", "run", "-f",
         str(manifests), "--port", "0", "--data-dir", str(tmp_path / "data"), "--store", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert names.deliveries_stream in run.stderr and "create=true" in run.stderr
