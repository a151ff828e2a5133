"""PingSource, ContainerSource and SinkBinding manifests: one row per rule, typed results, plans."""

from __future__ import annotations

import base64
import textwrap
from typing import Any

import pytest
import yaml

from sources.container import ContainerConfig
from sources.ping import PingConfig
from sources.schedule import Schedule
from tests.test_manifests import DROP, load_one, patched
from weir.manifests import Destination, KRef, load_text
from weir.manifests.source_model import (
    SINK_BINDING_STATUS,
    ContainerSource,
    PingSource,
    SinkBinding,
    Subject,
)

SINK = {"uri": "http://127.0.0.1:9/in"}
BROKER_REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
PING: dict[str, Any] = {
    "apiVersion": "sources.knative.dev/v1",
    "kind": "PingSource",
    "metadata": {"name": "beat"},
    "spec": {"sink": SINK},
}
CONTAINER_SPEC = {"name": "c", "image": "example/heartbeats", "command": ["/bin/heartbeats"]}
CONTAINER: dict[str, Any] = {
    "apiVersion": "sources.knative.dev/v1",
    "kind": "ContainerSource",
    "metadata": {"name": "hb"},
    "spec": {"template": {"spec": {"containers": [CONTAINER_SPEC]}}, "sink": SINK},
}
BINDING: dict[str, Any] = {
    "apiVersion": "sources.knative.dev/v1",
    "kind": "SinkBinding",
    "metadata": {"name": "bind"},
    "spec": {"subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}, "sink": SINK},
}


def container(**fields: Any) -> dict[str, Any]:
    """A ContainerSource patch setting ``containers[0]`` to CONTAINER_SPEC plus ``fields``."""
    spec = {k: v for k, v in {**CONTAINER_SPEC, **fields}.items() if v is not DROP}
    return {"spec": {"template": {"spec": {"containers": [spec]}}}}


def pod(**fields: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": fields}}}


def subject(**fields: Any) -> dict[str, Any]:
    return {"spec": {"subject": fields}}


Row = tuple[str, dict[str, Any], dict[str, Any], str]

# (id, base, patch, expected substring of the only problem)
INVALID: list[Row] = [
    # -- the Source duck, through every kind ------------------------------------------------------
    ("ping without sink", PING, {"spec": {"sink": DROP}}, "spec.sink: missing required field"),
    ("container without sink", CONTAINER, {"spec": {"sink": DROP}}, "spec.sink: missing required field"),
    ("binding without sink", BINDING, {"spec": {"sink": DROP}}, "spec.sink: missing required field"),
    (
        "sink relative uri",
        PING,
        {"spec": {"sink": {"uri": "/in"}}},
        'spec.sink.uri: "/in" must be an absolute',
    ),
    ("sink empty", PING, {"spec": {"sink": {"uri": DROP}}}, "spec.sink: expected at least one of ref, uri"),
    (
        "override of type",
        PING,
        {"spec": {"ceOverrides": {"extensions": {"type": "x"}}}},
        'spec.ceOverrides.extensions.type: "type" is a CloudEvents context attribute; ceOverrides can '
        "only set extensions",
    ),
    (
        "override of id",
        CONTAINER,
        {"spec": {"ceOverrides": {"extensions": {"id": "x"}}}},
        "context attribute",
    ),
    ("override of source", BINDING, {"spec": {"ceOverrides": {"extensions": {"source": "x"}}}}, "context"),
    ("override of time", PING, {"spec": {"ceOverrides": {"extensions": {"time": "x"}}}}, "context attribute"),
    (
        "override upper case",
        PING,
        {"spec": {"ceOverrides": {"extensions": {"Team": "x"}}}},
        'spec.ceOverrides.extensions.Team: "Team" is not a CloudEvents attribute name',
    ),
    (
        "override dash",
        PING,
        {"spec": {"ceOverrides": {"extensions": {"my-ext": "x"}}}},
        "spec.ceOverrides.extensions.my-ext: ",
    ),
    ("override data", PING, {"spec": {"ceOverrides": {"extensions": {"data": "x"}}}}, "not a CloudEvents"),
    (
        "override not a string",
        PING,
        {"spec": {"ceOverrides": {"extensions": {"n": 5}}}},
        "spec.ceOverrides.extensions.n: must be a string (quote it), got the number 5",
    ),
    (
        "overrides unknown field",
        PING,
        {"spec": {"ceOverrides": {"extension": {}}}},
        'unknown field "spec.ceOverrides.extension"',
    ),
    # -- PingSource -----------------------------------------------------------------------------
    ("ping unknown field", PING, {"spec": {"jsonData": "{}"}}, 'unknown field "spec.jsonData"'),
    ("@every", PING, {"spec": {"schedule": "@every 1m"}}, "spec.schedule: unsupported descriptor @every"),
    ("@reboot", PING, {"spec": {"schedule": "@reboot"}}, "spec.schedule: unrecognized descriptor @reboot"),
    (
        "3 fields",
        PING,
        {"spec": {"schedule": "* * *"}},
        "spec.schedule: expected 5 fields, or 6 with leading",
    ),
    ("7 fields", PING, {"spec": {"schedule": "0 0 0 1 1 * 2030"}}, "spec.schedule: expected 5 fields"),
    ("minute 60", PING, {"spec": {"schedule": "60 * * * *"}}, "spec.schedule: "),
    ("quartz L", PING, {"spec": {"schedule": "0 0 L * *"}}, "spec.schedule: day-of-month field 'L'"),
    ("never fires", PING, {"spec": {"schedule": "0 0 31 2 *"}}, "spec.schedule: '0 0 31 2 *' never fires"),
    ("schedule number", PING, {"spec": {"schedule": 5}}, "spec.schedule: must be a string, got the number 5"),
    (
        "bad timezone",
        PING,
        {"spec": {"timezone": "Mars/Olympus"}},
        "spec.timezone: provided bad location Mars/Olympus",
    ),
    (
        "bad CRON_TZ",
        PING,
        {"spec": {"schedule": "CRON_TZ=Nowhere/City * * * * *"}},
        "spec.schedule: provided bad location Nowhere/City",
    ),
    (
        "CRON_TZ and timezone",
        PING,
        {"spec": {"schedule": "CRON_TZ=UTC * * * * *", "timezone": "UTC"}},
        "spec.schedule: a CRON_TZ= or TZ= prefix cannot be combined with spec.timezone",
    ),
    (
        "data and dataBase64",
        PING,
        {"spec": {"data": "x", "dataBase64": "eA=="}},
        "spec.data, spec.dataBase64: expected exactly one, got both",
    ),
    ("bad base64", PING, {"spec": {"dataBase64": "not base64!"}}, "spec.dataBase64: not valid base64"),
    ("base64 padding", PING, {"spec": {"dataBase64": "eA"}}, "spec.dataBase64: not valid base64"),
    (
        "json array",
        PING,
        {"spec": {"contentType": "application/json", "data": "[1, 2]"}},
        "spec.data: must be a JSON object when contentType is application/json, got an array",
    ),
    (
        "json scalar",
        PING,
        {"spec": {"contentType": "application/json", "data": '"hi"'}},
        'must be a JSON object when contentType is application/json, got "hi"',
    ),
    (
        "json null",
        PING,
        {"spec": {"contentType": "application/json", "data": "null"}},
        "must be a JSON object when contentType is application/json, got null",
    ),
    (
        "not json",
        PING,
        {"spec": {"contentType": "application/json", "data": "{oops"}},
        "spec.data: not valid JSON",
    ),
    (
        "base64 json array",
        PING,
        {"spec": {"contentType": "application/json", "dataBase64": base64.b64encode(b"[1]").decode()}},
        "spec.dataBase64: must be a JSON object",
    ),
    ("content type", PING, {"spec": {"contentType": "json"}}, 'spec.contentType: "json" is not a media type'),
    (
        "catch-up value",
        PING,
        {"metadata": {"annotations": {"weir.dev/catch-up": "yes"}}},
        'metadata.annotations[weir.dev/catch-up]: "yes" is not one of true, false',
    ),
    # -- ContainerSource ------------------------------------------------------------------------
    ("container unknown field", CONTAINER, {"spec": {"image": "x"}}, 'unknown field "spec.image"'),
    ("no template", CONTAINER, {"spec": {"template": DROP}}, "spec.template: missing required field"),
    ("no containers", CONTAINER, pod(containers=[]), "spec.template.spec.containers: missing required field"),
    ("containers not a list", CONTAINER, pod(containers={}), "spec.template.spec.containers: must be a list"),
    (
        "two containers",
        CONTAINER,
        pod(containers=[CONTAINER_SPEC, CONTAINER_SPEC]),
        "spec.template.spec.containers[1]: Weir runs one container per ContainerSource, got 2",
    ),
    (
        "container name",
        CONTAINER,
        container(name=DROP),
        "spec.template.spec.containers[0].name: missing required field",
    ),
    (
        "container image",
        CONTAINER,
        container(image=DROP),
        "spec.template.spec.containers[0].image: missing required field",
    ),
    (
        "no command",
        CONTAINER,
        container(command=DROP),
        "spec.template.spec.containers[0].command: missing required field: Weir runs the command locally "
        "(image is used only on Kubernetes)",
    ),
    ("empty command", CONTAINER, container(command=[]), "containers[0].command: missing required field"),
    (
        "command not a list",
        CONTAINER,
        container(command="run"),
        'spec.template.spec.containers[0].command: must be a list of strings, got "run"',
    ),
    (
        "arg not a string",
        CONTAINER,
        container(args=["--period", 5]),
        "spec.template.spec.containers[0].args[1]: must be a string (quote it), got the number 5",
    ),
    (
        "env valueFrom",
        CONTAINER,
        container(env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
        "spec.template.spec.containers[0].env[0].valueFrom: not supported outside Kubernetes",
    ),
    (
        "env without name",
        CONTAINER,
        container(env=[{"value": "x"}]),
        "spec.template.spec.containers[0].env[0].name: missing required field",
    ),
    (
        "env value number",
        CONTAINER,
        container(env=[{"name": "N", "value": 1}]),
        "spec.template.spec.containers[0].env[0].value: must be a string (quote it)",
    ),
    (
        "env unknown",
        CONTAINER,
        container(env=[{"name": "N", "val": "1"}]),
        'unknown field "spec.template.spec.',
    ),
    (
        "envFrom",
        CONTAINER,
        container(envFrom=[{"configMapRef": {"name": "c"}}]),
        "spec.template.spec.containers[0].envFrom: not supported outside Kubernetes",
    ),
    (
        "volumeMounts",
        CONTAINER,
        container(volumeMounts=[]),
        "containers[0].volumeMounts: not supported outside",
    ),
    ("volumes", CONTAINER, pod(containers=[CONTAINER_SPEC], volumes=[]), "spec.template.spec.volumes: not"),
    (
        "initContainers",
        CONTAINER,
        pod(containers=[CONTAINER_SPEC], initContainers=[]),
        "spec.template.spec.initContainers: not supported outside Kubernetes",
    ),
    (
        "container unknown",
        CONTAINER,
        container(imagePullPolcy="Always"),
        'unknown field "spec.template.spec.containers[0].imagePullPolcy"',
    ),
    (
        "pod unknown",
        CONTAINER,
        pod(containers=[CONTAINER_SPEC], nodes=1),
        'unknown field "spec.template.spec.nodes"',
    ),
    (
        "template unknown",
        CONTAINER,
        {"spec": {"template": {"spec": {"containers": [CONTAINER_SPEC]}, "status": {}}}},
        'unknown field "spec.template.status"',
    ),
    (
        "template label",
        CONTAINER,
        {"spec": {"template": {"metadata": {"labels": {"app": 1}}}}},
        "spec.template.metadata.labels.app: must be a string",
    ),
    # -- SinkBinding ----------------------------------------------------------------------------
    ("binding unknown field", BINDING, {"spec": {"subjects": []}}, 'unknown field "spec.subjects"'),
    ("no subject", BINDING, {"spec": {"subject": DROP}}, "spec.subject: missing required field"),
    ("subject kind", BINDING, subject(kind=DROP), "spec.subject.kind: missing required field"),
    (
        "subject apiVersion",
        BINDING,
        subject(apiVersion=DROP),
        "spec.subject.apiVersion: missing required field",
    ),
    (
        "name and selector",
        BINDING,
        subject(selector={"matchLabels": {"app": "x"}}),
        "spec.subject.name, spec.subject.selector: expected exactly one, got both",
    ),
    (
        "neither name nor selector",
        BINDING,
        subject(name=DROP),
        "spec.subject: expected exactly one of name, selector; got neither",
    ),
    (
        "other namespace",
        BINDING,
        subject(namespace="other"),
        'spec.subject.namespace: "other" must be empty or the SinkBinding\'s namespace "default"',
    ),
    (
        "selector operator",
        BINDING,
        subject(name=DROP, selector={"matchExpressions": [{"key": "app", "operator": "Like"}]}),
        'spec.subject.selector.matchExpressions[0].operator: "Like" is not one of In, NotIn',
    ),
    (
        "selector unknown",
        BINDING,
        subject(name=DROP, selector={"matchLabel": {}}),
        'unknown field "spec.subject.selector.matchLabel"',
    ),
    ("subject unknown", BINDING, subject(uid="x"), 'unknown field "spec.subject.uid"'),
]


@pytest.mark.parametrize(
    ("base", "patch", "expected"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_rule(base: dict[str, Any], patch: dict[str, Any], expected: str) -> None:
    resource, problems = load_one(patched(base, patch))
    assert resource is None
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith("x.yaml:")


VALID: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("v1beta2 PingSource", PING, {"apiVersion": "sources.knative.dev/v1beta2"}),
    ("6 fields", PING, {"spec": {"schedule": "*/10 * * * * *"}}),
    ("descriptor", PING, {"spec": {"schedule": "@hourly"}}),
    ("CRON_TZ", PING, {"spec": {"schedule": "CRON_TZ=Europe/Berlin 0 9 * * MON-FRI"}}),
    ("timezone", PING, {"spec": {"timezone": "America/New_York"}}),
    ("empty schedule is the default", PING, {"spec": {"schedule": ""}}),
    ("json object", PING, {"spec": {"contentType": "application/json", "data": '{"a": [1]}'}}),
    (
        "json charset is not checked",
        PING,
        {"spec": {"contentType": "application/json; charset=utf-8", "data": "x"}},
    ),
    ("text data", PING, {"spec": {"contentType": "text/plain", "data": "[1]"}}),
    ("catch-up false", PING, {"metadata": {"annotations": {"weir.dev/catch-up": "false"}}}),
    ("sink ref", PING, {"spec": {"sink": {"uri": DROP, "ref": BROKER_REF}}}),
    ("empty overrides", PING, {"spec": {"ceOverrides": {}}}),
    (
        "Kubernetes-only fields",
        CONTAINER,
        {
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "hb"}},
                    "spec": {
                        "serviceAccountName": "sa",
                        "nodeSelector": {"zone": "a"},
                        "restartPolicy": "Always",
                        "containers": [
                            {
                                **CONTAINER_SPEC,
                                "imagePullPolicy": "Always",
                                "ports": [{"containerPort": 80}],
                                "resources": {"limits": {"cpu": "1"}},
                                "readinessProbe": {},
                            }
                        ],
                    },
                }
            }
        },
    ),  # fmt: skip
    ("selector subject", BINDING, subject(name=DROP, selector={"matchLabels": {"app": "x"}})),
    ("subject same namespace", BINDING, subject(namespace="default")),
]


@pytest.mark.parametrize(("base", "patch"), [row[1:] for row in VALID], ids=[row[0] for row in VALID])
def test_valid(base: dict[str, Any], patch: dict[str, Any]) -> None:
    resource, problems = load_one(patched(base, patch))
    assert problems == []
    assert resource is not None


def test_ping_source_typed_fields_and_config() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: sources.knative.dev/v1
        kind: PingSource
        metadata:
          name: heartbeat
          namespace: demo
          annotations: {weir.dev/catch-up: "true"}
        spec:
          schedule: "*/2 * * * *"
          timezone: Europe/Berlin
          contentType: application/json
          data: '{"message": "Hello world!"}'
          ceOverrides: {extensions: {team: blue, env: prod}}
          sink:
            ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
        """
    )
    result = load_text(text, file="p.yaml")
    assert result.problems == []
    [source] = result.resources
    assert isinstance(source, PingSource)
    assert source.key == ("PingSource", "demo", "heartbeat")
    assert source.sink == Destination(
        ref=KRef(api_version="eventing.knative.dev/v1", kind="Broker", name="default")
    )
    assert source.ce_overrides == {"team": "blue", "env": "prod"}
    assert source.schedule == Schedule(expression="*/2 * * * *", seconds=False, timezone="Europe/Berlin")
    assert source.data == b'{"message": "Hello world!"}'  # byte for byte as written
    assert source.catch_up is True
    assert source.config() == PingConfig(
        namespace="demo",
        name="heartbeat",
        schedule=source.schedule,
        content_type="application/json",
        data=b'{"message": "Hello world!"}',
        ce_overrides=(("env", "prod"), ("team", "blue")),
        catch_up=True,
    )
    plan = source.plan(sink_uri="http://127.0.0.1:9/demo/default")
    assert plan.key == source.key and plan.spec == source.config() and hash(plan.spec)
    assert plan.sink_uri == "http://127.0.0.1:9/demo/default"


def test_ping_source_defaults_and_base64() -> None:
    manifest = patched(PING, {"spec": {"dataBase64": base64.b64encode(b"\x00\xff").decode()}})
    source, problems = load_one(manifest)
    assert problems == [] and isinstance(source, PingSource)
    assert source.schedule == Schedule(expression="* * * * *", seconds=False, timezone="UTC")
    assert (source.data, source.content_type, source.catch_up, source.ce_overrides) == (
        b"\x00\xff",
        None,
        False,
        {},
    )


def test_container_source_typed_fields_and_config() -> None:
    patch = container(
        args=["--period", "$(PERIOD)"],
        env=[{"name": "PERIOD", "value": "5"}, {"name": "EMPTY"}],
        workingDir="/srv",
    )
    manifest = patched(
        CONTAINER, {**patch, "spec": {**patch["spec"], "ceOverrides": {"extensions": {"a": "1"}}}}
    )
    source, problems = load_one(manifest)
    assert problems == [] and isinstance(source, ContainerSource)
    assert source.config() == ContainerConfig(
        namespace="default",
        name="hb",
        command=("/bin/heartbeats",),
        args=("--period", "$(PERIOD)"),
        env=(("PERIOD", "5"), ("EMPTY", "")),
        working_dir="/srv",
        image="example/heartbeats",
        ce_overrides=(("a", "1"),),
    )
    plan = source.plan(sink_uri="http://127.0.0.1:9/in", base_env={"PATH": "/usr/bin"})
    assert plan.spec == source.config() and hash(plan.spec)


def test_sink_binding_loads_but_is_kubernetes_only() -> None:
    manifest = patched(BINDING, subject(name=DROP, selector={"matchLabels": {"app": "x"}}))
    binding, problems = load_one(manifest)
    assert problems == [] and isinstance(binding, SinkBinding)
    assert binding.subject == Subject(
        api_version="apps/v1", kind="Deployment", selector={"matchLabels": {"app": "x"}}
    )
    assert not SINK_BINDING_STATUS.ready
    assert SINK_BINDING_STATUS.reason == "KubernetesOnly"
    assert SINK_BINDING_STATUS.message == (
        "SinkBinding injects K_SINK into Kubernetes workloads; not available locally"
    )


def test_problems_name_file_line_resource_and_field() -> None:
    bad_ping = patched(PING, {"metadata": {"name": "bad"}, "spec": {"schedule": "@every 5m"}})
    bad_container = patched(CONTAINER, container(env=[{"name": "A", "valueFrom": {}}]))
    text = yaml.safe_dump_all([PING, bad_ping, bad_container], sort_keys=False)
    result = load_text(text, file="deploy/sources.yaml")
    assert [r.name for r in result.resources] == ["beat"]
    lines = text.splitlines()
    for problem in result.problems:
        where, _, rest = problem.partition(": ")
        file, line = where.rsplit(":", 1)
        assert file == "deploy/sources.yaml"
        field = rest.split(": ")[1].rsplit(".", 1)[-1].split("[")[0]
        assert field in lines[int(line) - 1], (problem, lines[int(line) - 1])
    assert sorted(p.split(": ", 1)[1] for p in result.problems) == [
        "ContainerSource default/hb: spec.template.spec.containers[0].env[0].valueFrom: "
        "not supported outside Kubernetes",
        "PingSource default/bad: spec.schedule: unsupported descriptor @every",
    ]
