"""Sources inside ``weir run``: events reach Triggers, status is served, refused events are kept."""

from __future__ import annotations

import hashlib
import hmac
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from tests.sinks import RecordingSink, unused_url
from tests.weirproc import WeirProcess, cli, poll

pytestmark = pytest.mark.timeout(120)

BROKER = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n"


def trigger(uri: str, delivery: str = "") -> str:
    return (
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: pings\n"
        "spec:\n  broker: default\n  filter:\n    attributes:\n      type: dev.knative.sources.ping\n"
        f"  subscriber:\n    uri: {uri}\n{delivery}"
    )


def ping(name: str, sink: str) -> str:
    return (
        f"apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: {name}\nspec:\n"
        '  schedule: "* * * * * *"\n  contentType: application/json\n  data: \'{"hello": "ping"}\'\n'
        "  ceOverrides:\n    extensions:\n      team: weir\n"
        f"  sink:\n{sink}"
    )


BROKER_SINK = "    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n"


@pytest.fixture
async def weirs() -> AsyncIterator[list[WeirProcess]]:
    started: list[WeirProcess] = []
    yield started
    for proc in started:
        await proc.ensure_stopped()


async def get_json(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        body: dict[str, object] = await response.json()
        return body


async def test_ping_source_reaches_a_trigger_and_reports_status(
    tmp_path: Path, weirs: list[WeirProcess]
) -> None:
    async with RecordingSink() as sink:
        lost = BROKER_SINK.replace("name: default", "name: gone")
        (tmp_path / "m.yaml").write_text(
            "---\n".join(
                [BROKER, trigger(sink.url_for("/pings")), ping("tick", BROKER_SINK), ping("lost", lost)]
            )
        )
        weir = WeirProcess([tmp_path / "m.yaml"], tmp_path, "--no-watch")
        weirs.append(await weir.start())
        received = await sink.wait_for(2, path="/pings", timeout=10)
        event = received[0].event
        assert event is not None
        assert event.type == "dev.knative.sources.ping"
        assert event.source == "/apis/v1/namespaces/default/pingsources/tick"
        assert event.get("team") == "weir" and event.data == b'{"hello": "ping"}'

        api = f"{weir.url}/apis/sources.knative.dev/v1/namespaces/default/pingsources"
        tick = await get_json(f"{api}/tick")
        status = tick["status"]
        assert isinstance(status, dict)
        assert status["sinkUri"] == f"{weir.url}/default/default"
        assert status["conditions"][0]["status"] == "True"
        lost_status = (await get_json(f"{api}/lost"))["status"]
        assert isinstance(lost_status, dict) and lost_status["conditions"][0]["reason"] == "SinkNotFound"

        code, table, err = await cli("get", "sources", "--server", weir.url)
        assert code == 0, err
        assert "tick" in table and "PingSource" in table and "SinkNotFound" in table
        assert await weir.terminate() == 0


async def test_refused_source_events_land_in_the_dead_letter_record(
    tmp_path: Path, weirs: list[WeirProcess]
) -> None:
    # One pending event fills the store; the Broker then answers 503 and the source gives up.
    stuck = "  delivery:\n    retry: 100\n    backoffDelay: PT1S\n    backoffPolicy: linear\n"
    (tmp_path / "m.yaml").write_text(
        "---\n".join([BROKER, trigger(unused_url(), stuck), ping("tick", BROKER_SINK)])
    )
    weir = WeirProcess([tmp_path / "m.yaml"], tmp_path, "--no-watch", "--store-max-events", "1")
    weirs.append(await weir.start())

    async def recorded() -> bool:
        code, out, _ = await cli("deadletters", "default", "--server", weir.url, "-o", "json")
        return code == 0 and "PingSource:default/tick" in out

    await poll(recorded, timeout=30, what="a refused ping event in the dead-letter record")
    assert "was never accepted by its sink" in weir.stderr()  # also logged with its full content


WEBHOOK = """\
apiVersion: sources.weir.dev/v1alpha1
kind: WebhookSource
metadata:
  name: orders
spec:
  type: com.example.order
  source: /shop
  attributes:
    subject: order.id
  hmac:
    secretKeyRef: {name: shop, key: token}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
"""


def order_trigger(uri: str) -> str:
    return (
        trigger(uri)
        .replace("dev.knative.sources.ping", "com.example.order")
        .replace("name: pings", "name: orders")
    )


async def test_webhook_source_verifies_and_reaches_a_trigger(
    tmp_path: Path, weirs: list[WeirProcess]
) -> None:
    secret = b"s3cret"
    (tmp_path / "secrets" / "default" / "shop").mkdir(parents=True)
    (tmp_path / "secrets" / "default" / "shop" / "token").write_bytes(secret)
    async with RecordingSink() as sink:
        (tmp_path / "m.yaml").write_text(
            "---\n".join([BROKER, order_trigger(sink.url_for("/orders")), WEBHOOK])
        )
        weir = WeirProcess(
            [tmp_path / "m.yaml"], tmp_path, "--no-watch", "--secrets-dir", str(tmp_path / "secrets")
        )
        weirs.append(await weir.start())
        url = f"{weir.url}/sources/default/orders"
        body = b'{"order": {"id": "o-17"}}'
        good = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        headers = {"content-type": "application/json"}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url, data=body, headers={**headers, "x-signature-256": "sha256=00"}
            ) as bad:
                assert bad.status == 401
            async with session.post(url, data=body, headers={**headers, "x-signature-256": good}) as ok:
                assert ok.status == 202, await ok.text()
        (received,) = await sink.wait_for(1, path="/orders")
        assert received.event is not None
        assert (received.event.type, received.event.source) == ("com.example.order", "/shop")
        assert received.event.get("subject") == "o-17" and received.event.data == body


async def test_kafka_source_reaches_a_trigger(
    tmp_path: Path, weirs: list[WeirProcess], kafka_bootstrap: str
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    manifest = f"""\
apiVersion: sources.knative.dev/v1
kind: KafkaSource
metadata:
  name: orders
spec:
  bootstrapServers: ["{kafka_bootstrap}"]
  topics: ["{topic}"]
  initialOffset: earliest
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
"""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f'{{"n": {i}}}'.encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    async with RecordingSink() as sink:
        kafka_trigger = trigger(sink.url_for("/kafka")).replace(
            "dev.knative.sources.ping", "dev.knative.kafka.event"
        )
        (tmp_path / "m.yaml").write_text("---\n".join([BROKER, kafka_trigger, manifest]))
        weir = WeirProcess([tmp_path / "m.yaml"], tmp_path, "--no-watch")
        weirs.append(await weir.start())
        received = await sink.wait_for(3, path="/kafka", timeout=30)
        events = sorted((r.event for r in received if r.event is not None), key=lambda e: e.id)
        assert [e.data for e in events] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert events[0].source == f"/apis/v1/namespaces/default/kafkasources/orders#{topic}"
        assert events[0].get("key") == "k0"


async def test_container_source_posts_through_the_broker(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    program = Path(__file__).with_name("container_program.py")
    container = f"""\
apiVersion: sources.knative.dev/v1
kind: ContainerSource
metadata:
  name: heartbeat
spec:
  template:
    spec:
      containers:
        - name: main
          image: example.com/heartbeat:1
          command: ["{sys.executable}", "{program}"]
          args: ["serve"]
          env:
            - {{name: EVENT_TYPE, value: dev.weir.container}}
  ceOverrides:
    extensions: {{team: weir}}
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
"""
    async with RecordingSink() as sink:
        subscriber = trigger(sink.url_for("/c")).replace("dev.knative.sources.ping", "dev.weir.container")
        (tmp_path / "m.yaml").write_text("---\n".join([BROKER, subscriber, container]))
        weir = WeirProcess([tmp_path / "m.yaml"], tmp_path, "--no-watch")
        weirs.append(await weir.start())
        (received,) = await sink.wait_for(1, path="/c", timeout=15)
        assert received.event is not None and received.event.get("team") == "weir"
        assert received.event.source == "/tests/container"
        await poll(lambda: "sent " in weir.stderr(), what="the program's output in Weir's log")
        assert await weir.terminate() == 0  # stops the process too


async def test_github_source_push_reaches_a_trigger(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    secret = b"gh-secret"
    (tmp_path / "secrets" / "default" / "gh").mkdir(parents=True)
    (tmp_path / "secrets" / "default" / "gh" / "webhook").write_bytes(secret)
    github = """\
apiVersion: sources.knative.dev/v1alpha1
kind: GitHubSource
metadata:
  name: repo
spec:
  eventTypes: [push]
  ownerAndRepository: weir-dev/weir
  accessToken:
    secretKeyRef: {name: gh, key: token}
  secretToken:
    secretKeyRef: {name: gh, key: webhook}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
"""
    async with RecordingSink() as sink:
        subscriber = trigger(sink.url_for("/gh")).replace(
            "dev.knative.sources.ping", "dev.knative.source.github.push"
        )
        (tmp_path / "m.yaml").write_text("---\n".join([BROKER, subscriber, github]))
        weir = WeirProcess(
            [tmp_path / "m.yaml"], tmp_path, "--no-watch", "--secrets-dir", str(tmp_path / "secrets")
        )
        weirs.append(await weir.start())
        body = b'{"ref": "refs/heads/main", "repository": {"html_url": "https://github.com/weir-dev/weir"}}'
        headers = {
            "content-type": "application/json",
            "x-github-event": "push",
            "x-github-delivery": "d-1",
            "x-hub-signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        async with aiohttp.ClientSession() as session:
            url = f"{weir.url}/sources/default/repo"
            async with session.post(
                url, data=body, headers={**headers, "x-hub-signature-256": "sha256=0"}
            ) as bad:
                assert bad.status == 401
            async with session.post(url, data=body, headers=headers) as ok:
                assert ok.status == 202, await ok.text()
        (received,) = await sink.wait_for(1, path="/gh")
        assert received.event is not None
        assert (received.event.type, received.event.id) == ("dev.knative.source.github.push", "d-1")
        assert received.event.data == body


async def test_gitlab_source_push_reaches_a_trigger(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    (tmp_path / "secrets" / "default" / "gl").mkdir(parents=True)
    (tmp_path / "secrets" / "default" / "gl" / "token").write_bytes(b"gl-secret")
    gitlab = """\
apiVersion: sources.knative.dev/v1alpha1
kind: GitLabSource
metadata:
  name: shop
spec:
  eventTypes: [push_events]
  projectUrl: https://gitlab.com/acme/shop
  secretToken:
    secretKeyRef: {name: gl, key: token}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
"""
    async with RecordingSink() as sink:
        subscriber = trigger(sink.url_for("/gl")).replace(
            "dev.knative.sources.ping", "dev.knative.sources.gitlab.push"
        )
        (tmp_path / "m.yaml").write_text("---\n".join([BROKER, subscriber, gitlab]))
        weir = WeirProcess(
            [tmp_path / "m.yaml"], tmp_path, "--no-watch", "--secrets-dir", str(tmp_path / "secrets")
        )
        weirs.append(await weir.start())
        body = b'{"object_kind": "push", "ref": "refs/heads/main"}'
        headers = {"content-type": "application/json", "x-gitlab-event": "Push Hook"}
        async with aiohttp.ClientSession() as session:
            url = f"{weir.url}/sources/default/shop"
            async with session.post(url, data=body, headers={**headers, "x-gitlab-token": "wrong"}) as bad:
                assert bad.status == 401
            async with session.post(url, data=body, headers={**headers, "x-gitlab-token": "gl-secret"}) as ok:
                assert ok.status == 202, await ok.text()
        (received,) = await sink.wait_for(1, path="/gl")
        assert received.event is not None and received.event.source == "https://gitlab.com/acme/shop"
        assert received.event.data == body
