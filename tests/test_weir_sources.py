"""Sources inside ``weir run``: events reach Triggers, status is served, refused events are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

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
