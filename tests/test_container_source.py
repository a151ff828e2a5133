"""ContainerSource: a real child process posting to a real sink, restarted with back-off.

The program is ``tests/container_program.py``; it posts one CloudEvent to ``$K_SINK`` with
``$K_CE_OVERRIDES`` applied, writes to stdout and stderr, then exits or waits (see its docstring).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.event import Event
from sources.base import Emitter
from sources.container import ContainerConfig, ContainerSource, RestartPolicy, container_env, expand
from sources.manager import SourceManager, SourcePlan
from tests.sinks import RecordingSink, eventually
from weir.manifests import load_text
from weir.manifests.source_model import ContainerSource as ContainerSourceResource

PROGRAM = Path(__file__).with_name("container_program.py")
LOGGER = "weir.sources.container"


class NoEmitter:
    """ContainerSource programs post to K_SINK themselves; the emitter must stay unused."""

    async def emit(self, event: Event) -> bool:
        raise AssertionError("a ContainerSource does not emit through Weir")


def no_emitter(plan: SourcePlan) -> Emitter:
    return NoEmitter()


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


@pytest.fixture
async def manager() -> AsyncIterator[SourceManager]:
    sources = SourceManager(emitter_for=no_emitter)
    yield sources
    await sources.stop()


def container_source(name: str, args: list[str], *, env: list[dict[str, str]] | None = None,
                     overrides: dict[str, str] | None = None) -> ContainerSourceResource:
    manifest: dict[str, Any] = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ContainerSource",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [{
                "name": "program",
                "image": "registry.example/program:1",
                "imagePullPolicy": "IfNotPresent",
                "command": [sys.executable, str(PROGRAM)],
                "args": args,
                "env": [{"name": "EVENT_TYPE", "value": "dev.weir.test.container"}, *(env or [])],
            }]}},
            "sink": {"uri": "http://127.0.0.1:9/unused"},
        },
    }  # fmt: skip
    if overrides:
        manifest["spec"]["ceOverrides"] = {"extensions": overrides}
    result = load_text(yaml.safe_dump(manifest), file="container.yaml")
    assert result.problems == []
    [resource] = result.resources
    assert isinstance(resource, ContainerSourceResource)
    return resource


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = (re.search(r"restarting in ([0-9.]+) s", line) for line in lines(caplog))
    return [float(match.group(1)) for match in found if match]


async def test_posts_to_k_sink_and_restarts_with_backoff(
    sink: RecordingSink, manager: SourceManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    source = container_source(
        "crashy", ["once", "$(EXIT_CODE)"], env=[{"name": "EXIT_CODE", "value": "3"}],
        overrides={"team": "blue", "tier": "1"},
    )  # fmt: skip
    restart = RestartPolicy(initial=0.2, maximum=0.8, reset_after=30.0)
    plan = source.plan(sink_uri=sink.url_for("/in"), restart=restart)
    await manager.apply({source.key: plan})
    requests = await sink.wait_for(4, path="/in", timeout=6.0)

    for request in requests[:4]:
        event = request.event
        assert event is not None
        assert event.type == "dev.weir.test.container" and event.source == "/tests/container"
        assert (event.get("team"), event.get("tier")) == ("blue", "1")
    pids = {r.body for r in requests[:4]}
    assert len(pids) == 4  # a new process each time
    # Back-off doubles from 0.2 s and is capped at 0.8 s; the requests are spaced accordingly.
    assert delays(caplog)[:3] == [0.2, 0.4, 0.8]
    gaps = [b.at - a.at for a, b in zip(requests, requests[1:4], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8

    status = manager.status(source.key)
    assert status is not None and int(status.extra["restarts"]) >= 3
    # Every output line is one log record, prefixed with the source's name.
    logged = lines(caplog)
    assert any(re.fullmatch(r"default/crashy: sent \S+ status 202", line) for line in logged)
    assert "default/crashy: second line" in logged
    assert "default/crashy: a line on stderr" in logged
    assert any("default/crashy: process" in line and "exited with code 3" in line for line in logged)


async def test_crash_looping_status(sink: RecordingSink, manager: SourceManager) -> None:
    source = container_source("looping", ["once", "1"])
    plan = source.plan(sink_uri=sink.url_for("/in"), restart=RestartPolicy(initial=5.0))
    await manager.apply({source.key: plan})
    await sink.wait_for(1, path="/in")

    def waiting() -> bool:
        status = manager.status(source.key)
        return status is not None and status.reason == "CrashLoopBackOff"

    await eventually(waiting, what="CrashLoopBackOff")
    status = manager.status(source.key)
    assert status is not None and not status.ready
    assert "exited with code 1" in status.message and "restarting in 5 s" in status.message


async def test_backoff_resets_after_a_long_enough_run(
    sink: RecordingSink, manager: SourceManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    source = container_source("steady", ["once", "0", "0.3"])
    plan = source.plan(sink_uri=sink.url_for("/in"), restart=RestartPolicy(initial=0.1, reset_after=0.25))
    await manager.apply({source.key: plan})
    await sink.wait_for(3, path="/in", timeout=5.0)
    await eventually(lambda: len(delays(caplog)) >= 3, what="three restarts")
    assert delays(caplog)[:3] == [0.1, 0.1, 0.1]


async def test_ready_while_running_and_stop_sends_sigterm(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    source = ContainerSource(program_config("serving", "serve"), sink_uri=sink.url_for("/in"))
    await source.start()
    await sink.wait_for(1, path="/in")
    await eventually(lambda: "default/serving: waiting for SIGTERM" in lines(caplog), what="its output")
    status = source.status()
    assert status.ready and status.message.startswith("running as pid")
    began = time.monotonic()
    await source.stop()
    assert time.monotonic() - began < 5.0
    assert "default/serving: terminating on SIGTERM" in lines(caplog)
    assert not source.status().ready and source.status().reason == "Stopped"
    assert_gone(sink.requests("/in")[0].body)


async def test_stop_kills_a_process_that_ignores_sigterm(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    policy = RestartPolicy(stop_timeout=0.5)
    config = program_config("stubborn", "stubborn")
    source = ContainerSource(config, sink_uri=sink.url_for("/in"), restart=policy)
    await source.start()
    await sink.wait_for(1, path="/in")
    await eventually(lambda: "default/stubborn: ignoring SIGTERM" in lines(caplog), what="its output")
    began = time.monotonic()
    await source.stop()
    assert 0.5 <= time.monotonic() - began < 5.0
    assert any("ignored SIGTERM" in line for line in lines(caplog))
    assert any("killed by signal 9" in line for line in lines(caplog))
    assert_gone(sink.requests("/in")[0].body)


async def test_a_command_that_cannot_run(sink: RecordingSink) -> None:
    config = ContainerConfig(namespace="default", name="missing", command=("/nonexistent/program",))
    source = ContainerSource(config, sink_uri=sink.url_for("/in"), restart=RestartPolicy(initial=0.05))
    await source.start()
    status = source.status()
    assert not status.ready and status.reason == "StartFailed"
    assert "cannot run '/nonexistent/program'" in status.message and "No such file" in status.message
    await eventually(lambda: int(source.status().extra["restarts"]) >= 2, what="retries")
    await source.stop()


def program_config(name: str, mode: str) -> ContainerConfig:
    return ContainerConfig(
        namespace="default",
        name=name,
        command=(sys.executable, str(PROGRAM)),
        args=(mode,),
        env=(("EVENT_TYPE", "dev.weir.test.container"),),
    )


def assert_gone(body: bytes) -> None:
    pid = int(body.decode().split()[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- pure helpers ---------------------------------------------------------------------------------

ENV = {"K_SINK": "http://h/in", "NAME": "x", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--sink=$(K_SINK)", "--sink=http://h/in"),
        ("$(NAME)-$(NAME)", "x-x"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(NAME)", "$(NAME)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("[$(EMPTY)]", "[]"),
        ("$(NAME", "$(NAME"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_container_env() -> None:
    config = ContainerConfig(
        namespace="n", name="c", command=("x",),
        env=(("A", "1"), ("K_SINK", "mine"), ("A", "2")),
        ce_overrides=(("team", "blue"),),
    )  # fmt: skip
    assert container_env(config, "http://sink/") == {
        "A": "2",
        "K_SINK": "http://sink/",
        "K_CE_OVERRIDES": '{"extensions":{"team":"blue"}}',
    }
    bare = ContainerConfig(namespace="n", name="c", command=("x",))
    assert container_env(bare, "http://sink/")["K_CE_OVERRIDES"] == '{"extensions":{}}'
