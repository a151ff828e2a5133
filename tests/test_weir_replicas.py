"""Scale-out end to end: ``weir run --role ingress|dispatcher`` replicas over NATS JetStream and Kafka.

Every test runs real ``weir run`` processes against a real log server (our own ``nats-server -js``
or the ``tansu`` Kafka broker) and a real sink, and counts what the sink received by event id:
every accepted event must arrive at least once; duplicates are allowed (at-least-once) and
reported in the test output.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.event import Event
from tests.nats_server import NatsServer
from tests.sinks import RecordingSink, Reply
from tests.weirproc import WeirProcess, cli, poll

BACKENDS = ["nats", "kafka"]
# Short leases so a killed replica's work moves on within seconds.
LEASES = "claim_lease=3&lease_ttl=3"

BROKER = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"


def trigger(name: str, uri: str, *, ordered: bool = False) -> str:
    annotations = (
        "  annotations: {kafka.eventing.knative.dev/delivery.order: ordered}\n" if ordered else ""
    )
    return (
        f"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n{annotations}"
        f"spec:\n  broker: default\n  subscriber: {{uri: '{uri}'}}\n"
    )


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on the session's log server, with a name prefix private to this test."""
    prefix = "t" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]
    if request.param == "nats":
        base = str(request.getfixturevalue("nats_url"))
    else:
        base = "kafka://" + str(request.getfixturevalue("kafka_bootstrap"))
    return f"{base}?prefix={prefix}&{LEASES}"


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as running:
        yield running


def manifests(folder: Path, *docs: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weir.yaml"
    path.write_text("---\n".join([BROKER, *docs]))
    return path


async def post_events(url: str, ids: list[str], **extensions: str) -> None:
    """Post each id as a binary CloudEvent; every one must be accepted (202)."""
    async with aiohttp.ClientSession() as session:
        for event_id in ids:
            headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/replicas",
                       "ce-type": "dev.weir.replicas", "content-type": "text/plain"}
            headers.update({f"ce-{k}": v for k, v in extensions.items()})
            async with session.post(url, data=event_id.encode(), headers=headers) as response:
                assert response.status == 202, await response.text()


def replica(path: Path, workdir: Path, store_url: str, role: str) -> WeirProcess:
    return WeirProcess([path], workdir, "--store", store_url, "--role", role)


def received(sink: RecordingSink, path: str = "/") -> Counter[str]:
    return Counter(r.event.id for r in sink.requests(path) if r.event is not None)


async def test_split_roles_need_a_shared_store(tmp_path: Path) -> None:
    path = manifests(tmp_path)
    code, _, err = await cli("run", "-f", str(path), "--role", "dispatcher", "--data-dir", str(tmp_path))
    assert code == 2
    assert "--role dispatcher needs a store several processes share" in err


async def test_every_role_serves_health_and_only_ingress_takes_events(
    store_url: str, sink: RecordingSink, tmp_path: Path
) -> None:
    path = manifests(tmp_path / "m", trigger("t", sink.url_for("/")))
    ingress = replica(path, tmp_path, store_url, "ingress")
    dispatcher = replica(path, tmp_path, store_url, "dispatcher")
    try:
        await asyncio.gather(ingress.start(timeout=40), dispatcher.start(timeout=40))
        async with aiohttp.ClientSession() as session:
            for proc in (ingress, dispatcher):
                async with session.get(proc.url + "/readyz") as response:
                    assert response.status == 200
            async with session.post(dispatcher.url + "/default/default", data=b"x") as response:
                assert response.status == 404
                assert "--role dispatcher" in await response.text()
        await post_events(ingress.url + "/default/default", ["one", "two"])
        await poll(lambda: set(received(sink)) == {"one", "two"}, timeout=30, what="both events delivered")
    finally:
        await asyncio.gather(ingress.ensure_stopped(), dispatcher.ensure_stopped())


@pytest.mark.parametrize("triggers", [1, 3], ids=["one-trigger", "three-triggers"])
async def test_killing_one_of_two_dispatchers_loses_nothing(
    store_url: str, sink: RecordingSink, tmp_path: Path, capsys: pytest.CaptureFixture[str], triggers: int
) -> None:
    # One Trigger: bundles of its own. Three: every route writes fan records, which the killed
    # replica may hold with all three Triggers' deliveries in them.
    paths = [f"/t{i}" for i in range(triggers)]
    for path_ in paths:
        # A small delay per delivery keeps both replicas busy when the kill lands.
        sink.respond(path_, lambda request: Reply(delay=0.005))
    path = manifests(tmp_path / "m", *(trigger(f"t{i}", sink.url_for(p)) for i, p in enumerate(paths)))
    ingress = replica(path, tmp_path, store_url, "ingress")
    first = replica(path, tmp_path, store_url, "dispatcher")
    second = replica(path, tmp_path, store_url, "dispatcher")
    ids = [f"e{i}" for i in range(400)]
    try:
        await asyncio.gather(ingress.start(timeout=40), first.start(timeout=40), second.start(timeout=40))
        await post_events(ingress.url + "/default/default", ids[:200])
        await poll(lambda: len(received(sink, paths[-1])) >= 50, timeout=30, what="deliveries under way")
        await first.kill()
        await post_events(ingress.url + "/default/default", ids[200:])
        await poll(lambda: all(set(received(sink, p)) == set(ids) for p in paths), timeout=90,
                   what=f"all {len(ids)} events delivered to each of {triggers} Trigger(s) after the kill")
    finally:
        await asyncio.gather(ingress.ensure_stopped(), first.ensure_stopped(), second.ensure_stopped())
    duplicates = sum(sum(received(sink, p).values()) - len(ids) for p in paths)
    with capsys.disabled():
        print(f"\n[{store_url.split(':')[0]}] kill -9 of one of two dispatchers: "
              f"{len(ids)} events to {triggers} Trigger(s), {duplicates} duplicate deliveries")


async def test_ordered_trigger_stays_ordered_per_partition_key_across_replicas(
    store_url: str, sink: RecordingSink, tmp_path: Path
) -> None:
    path = manifests(tmp_path / "m", trigger("t", sink.url_for("/"), ordered=True))
    ingress = replica(path, tmp_path, store_url, "ingress")
    replicas = [replica(path, tmp_path, store_url, "dispatcher") for _ in range(2)]
    try:
        await asyncio.gather(ingress.start(timeout=40), *(r.start(timeout=40) for r in replicas))
        for key in ("a", "b"):
            await post_events(ingress.url + "/default/default", [f"{key}{i}" for i in range(30)],
                              partitionkey=key)
        await poll(lambda: len(received(sink)) == 60, timeout=60, what="60 ordered deliveries")
    finally:
        await asyncio.gather(ingress.ensure_stopped(), *(r.ensure_stopped() for r in replicas))
    for key in ("a", "b"):
        order = [r.event.id for r in sink.requests("/") if r.event is not None and r.event.id.startswith(key)]
        assert order == [f"{key}{i}" for i in range(30)]


async def test_replies_and_dead_letters_work_across_replicas(
    store_url: str, sink: RecordingSink, tmp_path: Path
) -> None:
    """A reply goes back into the Broker through the shared log; a refused event lands in the
    dead-letter record, which every replica's admin API lists."""
    reply = Event({"specversion": "1.0", "id": "reply-1", "source": "/sink", "type": "dev.weir.reply"}, b"r")
    sink.respond("/echo", lambda request: Reply(event=reply) if request.event and request.event.id == "ask"
                 else Reply())
    sink.respond("/refuse", lambda request: Reply(status=400))
    echo = trigger("echo", sink.url_for("/echo")).replace(
        "spec:\n", "spec:\n  filter: {attributes: {type: dev.weir.replicas}}\n")
    replies = trigger("replies", sink.url_for("/replies")).replace(
        "spec:\n", "spec:\n  filter: {attributes: {type: dev.weir.reply}}\n")
    refuse = trigger("refuse", sink.url_for("/refuse")).replace(
        "spec:\n", "spec:\n  filter: {attributes: {type: dev.weir.replicas}}\n")
    path = manifests(tmp_path / "m", echo, replies, refuse)
    ingress = replica(path, tmp_path, store_url, "ingress")
    dispatchers = [replica(path, tmp_path, store_url, "dispatcher") for _ in range(2)]
    try:
        await asyncio.gather(ingress.start(timeout=40), *(d.start(timeout=40) for d in dispatchers))
        await post_events(ingress.url + "/default/default", ["ask"])
        await poll(lambda: "reply-1" in received(sink, "/replies"), timeout=30, what="the reply delivered")

        async def recorded() -> bool:
            code, out, _ = await cli("deadletters", "default", "--server", ingress.url, "-o", "json")
            return code == 0 and '"ask"' in out

        await poll(recorded, timeout=30, what="the refused event in the dead-letter record")
    finally:
        await asyncio.gather(ingress.ensure_stopped(), *(d.ensure_stopped() for d in dispatchers))


async def test_restarting_nats_server_mid_stream_loses_nothing(
    sink: RecordingSink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events are posted without pause while nats-server (file store) is killed and started
    again: ingress answers 503 with Retry-After meanwhile, recovers by itself, and every event
    that got a 202 is delivered, with no restart of Weir."""
    (tmp_path / "nats").mkdir()
    server = NatsServer(tmp_path / "nats")
    server.start()
    store_url = f"{server.url}?{LEASES}"
    path = manifests(tmp_path / "m", trigger("t", sink.url_for("/")))
    ingress = replica(path, tmp_path, store_url, "ingress")
    dispatcher = replica(path, tmp_path, store_url, "dispatcher")
    accepted: list[str] = []
    refused: list[str | None] = []
    stop = asyncio.Event()

    async def post_forever() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            status, retry_after = await post_one(ingress.url + "/default/default", f"e{n}")
            if status == 202:
                accepted.append(f"e{n}")
            else:
                assert status == 503, status
                refused.append(retry_after)
                await asyncio.sleep(0.05)

    try:
        await asyncio.gather(ingress.start(timeout=40), dispatcher.start(timeout=40))
        poster = asyncio.create_task(post_forever())
        await poll(lambda: len(received(sink)) >= 100, timeout=30, what="deliveries under way")
        server.kill()
        await poll(lambda: len(refused) >= 3, timeout=30, what="ingress to refuse while the log is down")
        server.start()
        seen = len(accepted)
        await poll(lambda: len(accepted) >= seen + 100, timeout=60, what="ingress to accept again")
        stop.set()
        await poster
        await poll(lambda: set(accepted) <= set(received(sink)), timeout=90,
                   what="every accepted event delivered after the restart")
    finally:
        stop.set()
        await asyncio.gather(ingress.ensure_stopped(), dispatcher.ensure_stopped())
        server.stop()
    assert all(value is not None and int(value) >= 1 for value in refused)
    counts = received(sink)
    duplicates = sum(counts[i] for i in accepted) - len(accepted)
    with capsys.disabled():
        print(f"\n[nats] nats-server kill -9 and restart mid-stream: {len(accepted)} accepted, "
              f"{len(refused)} refused with 503, {duplicates} duplicate deliveries")


async def post_one(url: str, event_id: str) -> tuple[int, str | None]:
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/replicas",
               "ce-type": "dev.weir.replicas", "content-type": "text/plain"}
    async with aiohttp.ClientSession() as session, session.post(url, data=b"x", headers=headers) as response:
        return response.status, response.headers.get("retry-after")


PING = (
    "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: tick}\n"
    "spec:\n  schedule: '* * * * * *'\n  data: tick\n"
    "  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}\n"
)


async def test_a_ping_source_fires_once_per_tick_and_moves_when_its_replica_dies(
    store_url: str, sink: RecordingSink, tmp_path: Path
) -> None:
    path = manifests(tmp_path / "m", PING, trigger("t", sink.url_for("/")))
    ingress = replica(path, tmp_path, store_url, "ingress")
    dispatchers = [replica(path, tmp_path, store_url, "dispatcher") for _ in range(2)]

    def firings() -> dict[str, set[str]]:
        """Event ids delivered per tick (the second of its ``time``). Two ids in one tick would
        be two firings; the same id twice is a redelivery, which at-least-once allows (a
        dispatcher joining the group can take a partition before the other's commit)."""
        out: dict[str, set[str]] = {}
        for r in sink.requests("/"):
            if r.event is not None:
                out.setdefault(str(r.event.get("time"))[:19], set()).add(r.event.id)
        return out

    def fired_twice() -> dict[str, set[str]]:
        return {tick: ids for tick, ids in firings().items() if len(ids) > 1}

    async def runner_of_the_source() -> WeirProcess | None:
        for proc in dispatchers:
            code, out, _ = await cli("get", "sources", "--server", proc.url, "-o", "json")
            if code == 0 and '"Standby"' not in out and '"True"' in out:
                return proc
        return None

    try:
        await asyncio.gather(ingress.start(timeout=40), *(d.start(timeout=40) for d in dispatchers))
        await poll(lambda: len(firings()) >= 4, timeout=30, what="four ticks delivered")
        assert not fired_twice(), f"a tick fired twice: {fired_twice()}"
        leader = await runner_of_the_source()
        assert leader is not None
        await leader.kill()
        seen = len(firings())
        await poll(lambda: len(firings()) >= seen + 3, timeout=30, what="ticks from the other replica")
        assert not fired_twice(), f"a tick fired twice: {fired_twice()}"
    finally:
        await asyncio.gather(ingress.ensure_stopped(), *(d.ensure_stopped() for d in dispatchers))
