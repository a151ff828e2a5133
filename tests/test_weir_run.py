"""End to end: ``weir run`` as a subprocess, real sinks on loopback, SQLite store on disk."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.sinks import Recorded, RecordingSink, Reply
from tests.weirproc import WEIR, WeirProcess, cli, free_port, poll

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)

BROKER = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n"


def trigger(name: str, uri: str, *, event_type: str | None = None, delivery: str = "") -> str:
    text = f"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n"
    text += "  broker: default\n"
    if event_type is not None:
        text += f"  filter:\n    attributes:\n      type: {event_type}\n"
    text += f"  subscriber:\n    uri: {uri}\n"
    if delivery:
        text += "  delivery:\n" + "".join(f"    {line}\n" for line in delivery.strip().splitlines())
    return text


async def post(
    url: str, event_type: str = "dev.weir.test", event_id: str | None = None, data: bytes = b"{}"
) -> int:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id or uuid.uuid4().hex,
        "ce-source": "/tests",
        "ce-type": event_type,
        "content-type": "application/json",
    }
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        await response.read()
        return response.status


async def get_json(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


@pytest.fixture
async def weirs() -> AsyncIterator[list[WeirProcess]]:
    started: list[WeirProcess] = []
    yield started
    for proc in started:
        await proc.ensure_stopped()


async def start(
    weirs: list[WeirProcess], paths: list[Path], workdir: Path, *extra: str, port: int | None = None
) -> WeirProcess:
    proc = WeirProcess(paths, workdir, *extra, port=port)
    weirs.append(proc)
    return await proc.start()


def ids(requests: list[Recorded]) -> set[str]:
    return {r.event.id for r in requests if r.event is not None}


async def test_examples_print_a_posted_event(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "deploy" / "examples", examples)
    weir = await start(weirs, [examples], tmp_path)
    # /healthz answers as soon as uvicorn listens; the URLs are printed a moment later.
    line = f"Broker default/default ingress: {weir.url}/default/default"
    await poll(lambda: line in weir.stdout(), what="the Broker's ingress URL on stdout")

    status = await post(f"{weir.url}/default/default", "dev.weir.tour", "tour-1", b'{"hello": "weir"}')
    assert status == 202
    await poll(lambda: "id: tour-1" in weir.stdout(), what="the log sink to print the event")
    out = weir.stdout()
    assert "☁️  cloudevents.Event" in out
    assert "type: dev.weir.tour" in out
    assert '"hello": "weir"' in out
    assert "knativearrivaltime:" in out

    sink = f"{weir.url}/sinks/default/event-display"
    async with aiohttp.ClientSession() as session:
        async with session.post(sink, data=b"x" * (2 << 20), headers={"ce-specversion": "1.0"}) as big:
            assert big.status == 413
        async with session.post(sink, data=b"{}", headers={"ce-specversion": "1.0"}) as bad:
            assert bad.status == 400 and "missing required attribute" in await bad.text()

    code, table, err = await cli("get", "brokers", "--server", weir.url)
    assert code == 0, err
    assert "default" in table and f"{weir.url}/default/default" in table and "True" in table
    assert await weir.terminate() == 0


async def test_status_of_trigger_without_broker(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    (tmp_path / "m.yaml").write_text(
        BROKER
        + "---\n"
        + trigger("orphan", "http://127.0.0.1:9/", delivery="retry: 0").replace(
            "broker: default", "broker: missing"
        )
    )
    weir = await start(weirs, [tmp_path / "m.yaml"], tmp_path)
    base = f"{weir.url}/apis/eventing.knative.dev/v1/namespaces/default"
    code, body = await get_json(f"{base}/triggers/orphan")
    assert code == 200
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")  # type: ignore[index]
    assert ready["status"] == "False" and ready["reason"] == "BrokerDoesNotExist"
    code, body = await get_json(f"{base}/brokers/default")
    assert code == 200 and body["status"]["address"]["url"] == f"{weir.url}/default/default"  # type: ignore[index]
    code, body = await get_json(f"{base}/brokers/nope")
    assert code == 404 and body["reason"] == "NotFound"
    code, table, _ = await cli("get", "triggers", "--server", weir.url)
    assert code == 0 and "orphan" in table and "BrokerDoesNotExist" in table


async def test_hot_reload_applies_edits_and_rejects_bad_ones(
    tmp_path: Path, weirs: list[WeirProcess]
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    async with RecordingSink() as sink:
        (folder / "broker.yaml").write_text(BROKER)
        (folder / "t1.yaml").write_text(trigger("t1", sink.url_for("/t1"), event_type="a"))
        weir = await start(weirs, [folder], tmp_path)
        ingress = f"{weir.url}/default/default"
        api = f"{weir.url}/apis/eventing.knative.dev/v1/namespaces/default/triggers"

        assert await post(ingress, "a", "a-1") == 202
        await sink.wait_for(1, path="/t1")

        # Edit: t1 now wants type b.
        (folder / "t1.yaml").write_text(trigger("t1", sink.url_for("/t1"), event_type="b"))
        try:
            await poll(lambda: _generation(api + "/t1", 2), what="t1 to reach generation 2")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; weir's stderr:\n{weir.stderr()}") from None
        assert await post(ingress, "a", "a-2") == 202
        assert await post(ingress, "b", "b-1") == 202
        await sink.wait_for(2, path="/t1")

        # Add a file: a second Trigger appears.
        (folder / "t2.yaml").write_text(trigger("t2", sink.url_for("/t2")))
        await poll(lambda: _exists(api + "/t2"), what="t2 to appear")
        assert await post(ingress, "c", "c-1") == 202
        await sink.wait_for(1, path="/t2")

        # A bad edit is rejected with file, resource, field and reason; the running state stays.
        (folder / "t2.yaml").write_text(
            trigger("t2", sink.url_for("/t2")).replace("spec:\n", "spec:\n  bogus: 1\n")
        )
        await poll(lambda: "manifest change rejected" in weir.stderr(), what="the rejection to be logged")
        assert "t2.yaml" in weir.stderr() and "spec.bogus" in weir.stderr()
        assert await post(ingress, "c", "c-2") == 202
        await sink.wait_for(2, path="/t2")

        # Remove the file: t2 goes away.
        (folder / "t2.yaml").unlink()
        await poll(lambda: _missing(api + "/t2"), what="t2 to disappear")
        assert ids(sink.requests("/t1")) == {"a-1", "b-1"}
        assert await weir.terminate() == 0


async def _generation(url: str, generation: int) -> bool:
    code, body = await get_json(url)
    return code == 200 and body["status"].get("observedGeneration") == generation  # type: ignore[attr-defined]


async def _exists(url: str) -> bool:
    return (await get_json(url))[0] == 200


async def _missing(url: str) -> bool:
    return (await get_json(url))[0] == 404


async def test_crash_loses_no_accepted_event(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    """N events accepted while the sink is down, kill -9, restart, sink up: all N delivered."""
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}/crash"
    delivery = "retry: 1000\nbackoffPolicy: linear\nbackoffDelay: PT0.05S\nbackoffMax: PT0.2S"
    (tmp_path / "m.yaml").write_text(BROKER + "---\n" + trigger("crash", sink_url, delivery=delivery))
    weir = await start(weirs, [tmp_path / "m.yaml"], tmp_path, "--no-watch")
    sent = [f"crash-{i}" for i in range(40)]
    for event_id in sent:
        assert await post(f"{weir.url}/default/default", event_id=event_id) == 202
    await weir.kill()

    async with RecordingSink(port=sink_port) as sink:
        await start(weirs, [tmp_path / "m.yaml"], tmp_path, "--no-watch", port=weir.port)
        await poll(lambda: ids(sink.requests("/crash")) >= set(sent), timeout=30, what="all events delivered")
    assert ids(sink.requests("/crash")) == set(sent)


async def test_sigterm_finishes_cleanly_and_resumes(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    async with RecordingSink(default=Reply(status=202, delay=0.3)) as sink:
        (tmp_path / "m.yaml").write_text(BROKER + "---\n" + trigger("slow", sink.url_for("/slow")))
        weir = await start(weirs, [tmp_path / "m.yaml"], tmp_path, "--no-watch", "--grace", "5")
        sent = [f"term-{i}" for i in range(150)]
        for event_id in sent:
            assert await post(f"{weir.url}/default/default", event_id=event_id) == 202
        assert await weir.terminate(timeout=20) == 0
        assert "stopped cleanly" in weir.stderr()
        await start(weirs, [tmp_path / "m.yaml"], tmp_path, "--no-watch", port=weir.port)
        await poll(
            lambda: ids(sink.requests("/slow")) >= set(sent), timeout=60, what="the rest to be delivered"
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BROKER.replace("name: default", "name: Bad_Name"), "metadata.name"),
        (trigger("t", "http://x/", delivery="backoffDelay: 5s"), "spec.delivery.backoffDelay"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            "kind ConfigMap (apiVersion v1) is not supported yet",
        ),
    ],
)
def test_validate_names_file_resource_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = subprocess.run([WEIR, "validate", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "bad.yaml" in result.stdout and expected in result.stdout


def test_validate_accepts_examples_and_run_refuses_bad_manifests(tmp_path: Path) -> None:
    ok = subprocess.run(
        [WEIR, "validate", "-f", str(ROOT / "deploy" / "examples")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(trigger("t", "http://x/", delivery="retry: -1"))
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
    result = run(
        [WEIR, "run", "-f", str(bad), "--port", str(free_port())], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "spec.delivery.retry" in result.stderr


async def test_cesql_trigger_filters_and_counts_errors(tmp_path: Path, weirs: list[WeirProcess]) -> None:
    async with RecordingSink() as sink:
        cesql = trigger("sql", sink.url_for("/sql")).replace(
            "spec:\n",
            "spec:\n  filters:\n    - cesql: \"type LIKE 'com.example.%' AND subject = 'o-1'\"\n",
            1,
        )
        (tmp_path / "m.yaml").write_text(BROKER + "---\n" + cesql)
        weir = await start(weirs, [tmp_path / "m.yaml"], tmp_path, "--no-watch")
        ingress = f"{weir.url}/default/default"
        headers = {"ce-specversion": "1.0", "ce-source": "/t", "ce-type": "com.example.order"}
        async with aiohttp.ClientSession() as session:
            for event_id, subject in (("yes", "o-1"), ("other", "o-2"), ("missing", None)):
                extra = {"ce-subject": subject} if subject else {}
                async with session.post(ingress, headers={**headers, **extra, "ce-id": event_id}) as response:
                    assert response.status == 202
        await sink.wait_for(1, path="/sql")

        async def counted() -> bool:
            async with aiohttp.ClientSession() as session, session.get(f"{weir.url}/metrics") as response:
                text = await response.text()
            return (
                'weir_cesql_evaluation_errors_total{kind="missingAttribute",trigger="default/sql"} 1.0'
                in text
            )

        await poll(counted, what="the missing attribute to be counted for the Trigger")
        assert ids(sink.requests("/sql")) == {"yes"}
