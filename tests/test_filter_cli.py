"""``weir filter test``: verdicts, the deciding element, and evaluation errors shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from broker.event import Event
from tests.weirproc import WEIR
from weir.filtertest import explain
from weir.manifests import Trigger, load_text

TRIGGERS = """\
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: orders}
spec:
  broker: default
  filters:
    - prefix: {type: com.example.}
    - cesql: "source = '/orders' AND subject LIKE 'o-%'"
  subscriber: {uri: "http://127.0.0.1:9/"}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: legacy}
spec:
  broker: default
  filter: {attributes: {type: com.example.order, subject: ""}}
  subscriber: {uri: "http://127.0.0.1:9/"}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all}
spec:
  broker: default
  subscriber: {uri: "http://127.0.0.1:9/"}
"""


def triggers() -> dict[str, Trigger]:
    result = load_text(TRIGGERS, file="t.yaml")
    assert not result.problems
    return {r.name: r for r in result.resources if isinstance(r, Trigger)}


def event(**extra: str) -> Event:
    return Event({"specversion": "1.0", "id": "1", "source": "/orders", "type": "com.example.order", **extra})


@pytest.mark.parametrize(
    ("trigger", "evt", "matches", "decided_by", "error"),
    [
        ("orders", event(subject="o-1"), True, "all 2 of spec.filters passed", None),
        ("orders", event(subject="x-1"), False, "spec.filters[1]", None),
        ("orders", event(), False, "spec.filters[1]", "missingAttribute"),
        ("orders", event(type="org.other"), False, "spec.filters[0]", None),
        ("legacy", event(subject="s"), True, "all of spec.filter.attributes matched", None),
        ("legacy", event(), False, "spec.filter.attributes.subject", None),
        ("legacy", event(type="other", subject="s"), False, "spec.filter.attributes.type", None),
        ("all", event(), True, "no filter: every event matches", None),
    ],
)
def test_explain(trigger: str, evt: Event, matches: bool, decided_by: str, error: str | None) -> None:
    verdict = explain(triggers()[trigger], evt)
    assert (verdict.matches, verdict.decided_by) == (matches, decided_by)
    if error is None:
        assert verdict.errors == []
    else:
        assert any(e.startswith(error) for e in verdict.errors)


def run_cli(tmp_path: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    manifest = tmp_path / "t.yaml"
    manifest.write_text(TRIGGERS)
    return subprocess.run(
        [WEIR, "filter", "test", "-f", str(manifest), *args], input=stdin, capture_output=True
    )


def test_cli_reads_stdin_and_shows_errors(tmp_path: Path) -> None:
    body = orjson.dumps(dict(event().attributes))
    result = run_cli(tmp_path, stdin=body)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "Trigger default/orders: NO MATCH (spec.filters[1]" in out
    assert "evaluation error: missingAttribute" in out
    assert "Trigger default/all: MATCH" in out


def test_cli_reads_a_file_with_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(orjson.dumps([dict(event(subject="o-1").attributes), dict(event(id="2").attributes)]))
    result = run_cli(tmp_path, "--event", str(path))
    out = result.stdout.decode()
    assert result.returncode == 0
    assert out.count("Trigger default/orders: MATCH") == 1 and "Event /orders 2:" in out


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"not json", "cannot read the event from stdin"),
        (b'{"specversion": "1.0", "source": "/s", "type": "t"}', "missing required attribute 'id'"),
    ],
)
def test_cli_rejects_bad_events(tmp_path: Path, stdin: bytes, message: str) -> None:
    result = run_cli(tmp_path, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr.decode()
