"""The official CESQL v1 conformance kit (TCK): one case per YAML test, all must pass.

The kit lives in ``../shared/cesql-tck/`` beside the repository. A case passes when the
expression fails to parse exactly when ``error: parse`` is expected; otherwise the evaluated value
equals ``result`` (type included: ``1`` is not ``true``) and the errors are exactly the one
``error`` kind expected, or none. ``event`` is a whole JSON event; ``eventOverrides`` are set on a
default event that has only the required attributes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.event import Event
from triggers.cesql import CesqlParseError, compile

ROOT = Path(__file__).resolve().parents[1]
TCK = ROOT.parent / "shared" / "cesql-tck"
DEFAULT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "tck-default-id",
    "source": "/tck/default",
    "type": "io.cloudevents.tck.default",
}


class _TckLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: ``time: 2018-04-26T14:48:09+02:00`` stays a string, as
    a CloudEvents Timestamp is a String to CESQL."""


_TckLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_event_reader() -> Callable[[dict[str, Any]], Event]:
    """``broker.bindings.json_format.from_dict`` when Weir has it, else a minimal equivalent."""
    try:
        module = importlib.import_module("broker.bindings.json_format")
    except ImportError:
        return lambda obj: Event({k: v for k, v in obj.items() if k not in ("data", "data_base64")})
    reader: Callable[[dict[str, Any]], Event] = module.from_dict
    return reader


def _cases() -> list[Any]:
    if not TCK.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"CESQL TCK not found at {TCK}"))]
    cases = []
    for path in sorted(TCK.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        suite = yaml.load(text, Loader=_TckLoader)
        for case, source in zip(suite["tests"], _expression_sources(text), strict=True):
            cases.append(pytest.param({**case, "expression": source}, id=f"{path.stem}::{case['name']}"))
    return cases


def _expression_sources(text: str) -> list[str]:
    """Each test's ``expression`` as written: YAML would turn ``-10`` or ``TRUE`` into numbers
    and booleans."""
    root = yaml.compose(text, Loader=_TckLoader)
    assert isinstance(root, yaml.MappingNode)
    tests = next(value for key, value in root.value if key.value == "tests")
    return [
        next(str(value.value) for key, value in test.value if key.value == "expression")
        for test in tests.value
    ]


def _event(case: dict[str, Any]) -> Event:
    if "event" in case:
        return _json_event_reader()(dict(case["event"]))
    return _json_event_reader()({**DEFAULT_EVENT, **(case.get("eventOverrides") or {})})


@pytest.mark.parametrize("case", _cases())
def test_tck(case: dict[str, Any]) -> None:
    expected_error = case.get("error")
    if expected_error == "parse":
        with pytest.raises(CesqlParseError):
            compile(case["expression"])
        return
    result = compile(case["expression"]).evaluate(_event(case))
    assert [e.kind for e in result.errors] == ([expected_error] if expected_error else []), result.errors
    if "result" in case:
        expected = case["result"]
        assert (result.value, type(result.value)) == (expected, type(expected))
