"""GitHubSource, GitLabSource, WebhookSource and KafkaSource manifests, secrets, and their plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.delivery.spec import DeliverySpec
from sources.github import GitHubConfig
from sources.gitlab import GitLabConfig
from sources.kafka import DEFAULT_DELIVERY, KafkaSourceConfig
from sources.webhook import HmacCheck, WebhookConfig
from sources.webhooks import WebhookRouter
from weir.manifests import load_text
from weir.manifests.model import Resource
from weir.manifests.resolve import ResolveContext
from weir.manifests.source_kinds_http import GitHubSource, GitLabSource, WebhookHmac, WebhookSource
from weir.manifests.source_kinds_kafka import KafkaSource
from weir.secrets import SecretKeyRef, SecretNotFound, SecretResolver, env_name

SINK = {"uri": "http://127.0.0.1:9/sink"}
TOKEN = {"secretKeyRef": {"name": "gh", "key": "token"}}
REF = SecretKeyRef(name="gh", key="token")
CTX = ResolveContext(
    broker_url=lambda ns, name: f"http://127.0.0.1:8080/{ns}/{name}",
    sink_url=lambda ns, name: None,
    service_map={},
)


def manifest(api_version: str, kind: str, spec: dict[str, Any], **metadata: Any) -> str:
    meta = {"name": "src", "namespace": "shop", **metadata}
    return yaml.safe_dump({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec})


def load_one(text: str) -> Resource:
    result = load_text(text, file="m.yaml")
    assert result.problems == []
    [resource] = result.resources
    return resource


def problems_of(text: str) -> list[str]:
    return load_text(text, file="m.yaml").problems


def github(**spec: Any) -> str:
    base = {"ownerAndRepository": "acme/shop", "eventTypes": ["push"], "secretToken": TOKEN, "sink": SINK}
    return manifest("sources.knative.dev/v1alpha1", "GitHubSource", {**base, **spec})


def gitlab(**spec: Any) -> str:
    base = {
        "projectUrl": "https://gitlab.com/acme/shop",
        "eventTypes": ["push_events"],
        "secretToken": TOKEN,
        "sink": SINK,
    }
    return manifest("sources.knative.dev/v1alpha1", "GitLabSource", {**base, **spec})


def webhook(**spec: Any) -> str:
    base = {"type": "com.acme.order", "source": "/shop", "sink": SINK}
    return manifest("sources.weir.dev/v1alpha1", "WebhookSource", {**base, **spec})


def kafka(
    api_version: str = "sources.knative.dev/v1", labels: dict[str, str] | None = None, **spec: Any
) -> str:
    base = {"bootstrapServers": ["127.0.0.1:9092"], "topics": ["orders"], "sink": SINK}
    return manifest(api_version, "KafkaSource", {**base, **spec}, labels=labels or {})


# -- GitHubSource / GitLabSource ------------------------------------------------------------------


def test_github_source_loads_with_knative_fields() -> None:
    source = load_one(
        github(
            eventTypes=["push", "issues", "push"],
            accessToken={"secretKeyRef": {"name": "gh", "key": "api"}},
            githubAPIURL="https://api.github.com",
            secure=True,
            serviceAccountName="default",
            ceOverrides={"extensions": {"team": "blue"}},
        )
    )
    assert isinstance(source, GitHubSource)
    assert source.owner_and_repository == "acme/shop"
    assert source.event_types == ("push", "issues")
    assert source.secret_token == SecretKeyRef(name="gh", key="token")
    assert source.access_token == SecretKeyRef(name="gh", key="api")
    assert source.ce_overrides == {"team": "blue"}


def test_gitlab_source_loads() -> None:
    source = load_one(gitlab(eventTypes=["push_events", "job_events"], sslverify=True))
    assert isinstance(source, GitLabSource)
    assert source.project_url == "https://gitlab.com/acme/shop"
    assert source.event_types == ("push_events", "job_events")


REJECTED = [
    ("github: no eventTypes", github(eventTypes=[]), "spec.eventTypes: missing required field"),
    ("github: unknown event type", github(eventTypes=["star"]), 'spec.eventTypes[0]: "star" is not one of'),
    ("github: no secretToken", github(secretToken=None), "spec.secretToken: missing required field"),
    (
        "github: secretKeyRef without key",
        github(secretToken={"secretKeyRef": {"name": "gh"}}),
        "spec.secretToken.secretKeyRef.key: missing required field",
    ),
    (
        "github: bad secret key",
        github(secretToken={"secretKeyRef": {"name": "gh", "key": "../x"}}),
        "is not a valid secret key",
    ),
    ("github: bad owner", github(ownerAndRepository="acme/shop/x"), "is not owner/repository"),
    ("github: no sink", github(sink=None), "spec.sink: missing required field"),
    ("github: unknown field", github(repo="x"), 'unknown field "spec.repo"'),
    ("github: secure not a flag", github(secure="yes"), "spec.secure: must be true or false"),
    ("gitlab: bad project URL", gitlab(projectUrl="gitlab.com/acme"), "is not an http(s) URL of a project"),
    ("gitlab: event type", gitlab(eventTypes=["push"]), 'spec.eventTypes[0]: "push" is not one of'),
    ("gitlab: no secretToken", gitlab(secretToken=None), "spec.secretToken: missing required field"),
    ("webhook: no type", webhook(type=None), "spec.type: missing required field"),
    ("webhook: no source", webhook(source=""), "spec.source: missing required field"),
    ("webhook: reserved attribute", webhook(attributes={"type": "kind"}), "is set by Weir"),
    ("webhook: attribute name", webhook(attributes={"Order-Id": "id"}), "lower-case letters"),
    ("webhook: bad path", webhook(attributes={"subject": "items[x]"}), "is not a path like"),
    (
        "webhook: hmac without secret",
        webhook(hmac={"header": "X-Sig"}),
        "secretKeyRef: missing required field",
    ),
    (
        "webhook: hmac algorithm",
        webhook(hmac={**TOKEN, "algorithm": "md5"}),
        'spec.hmac.algorithm: "md5" is not one of sha256, sha1',
    ),
    ("webhook: hmac header", webhook(hmac={**TOKEN, "header": "X Sig"}), "is not an HTTP header name"),
    ("kafka: no topics", kafka(topics=[]), "spec.topics: missing required field"),
    ("kafka: no servers", kafka(bootstrapServers=None), "spec.bootstrapServers: missing required field"),
    ("kafka: server without port", kafka(bootstrapServers=["kafka"]), '"kafka" is not host:port'),
    ("kafka: topic name", kafka(topics=["a topic"]), '"a topic" is not a Kafka topic name'),
    ("kafka: initialOffset", kafka(initialOffset="oldest"), '"oldest" is not one of earliest, latest'),
    ("kafka: ordering", kafka(ordering="random"), '"random" is not one of ordered, unordered'),
    ("kafka: consumers", kafka(consumers=0), "spec.consumers: 0 is out of range"),
    ("kafka: sasl", kafka(net={"sasl": {"enable": True}}), "spec.net.sasl: not supported yet"),
    ("kafka: tls", kafka(net={"tls": {"enable": True}}), "spec.net.tls: not supported yet"),
    ("kafka: delivery", kafka(delivery={"retry": -1}), "spec.delivery.retry: -1 is out of range"),
    (
        "kafka: key type label",
        kafka(labels={"kafkasources.sources.knative.dev/key-type": "long"}),
        '"long" is not one of string, int, float, byte-array',
    ),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_rejected(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(expected in p for p in problems), problems


# -- WebhookSource --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hmac", "expected"),
    [
        (TOKEN, WebhookHmac(secret=REF)),
        (
            {**TOKEN, "algorithm": "sha1", "header": "X-Hub-Signature"},
            WebhookHmac(secret=REF, header="x-hub-signature", algorithm="sha1", prefix="sha1="),
        ),
        ({**TOKEN, "prefix": ""}, WebhookHmac(secret=REF, prefix="")),
    ],
    ids=["defaults", "sha1 and own header", "no prefix"],
)  # fmt: skip
def test_webhook_hmac_defaults(hmac: dict[str, Any], expected: WebhookHmac) -> None:
    source = load_one(webhook(hmac=hmac))
    assert isinstance(source, WebhookSource)
    assert source.hmac == expected


def test_webhook_attributes_are_parsed() -> None:
    source = load_one(webhook(attributes={"subject": "order.id", "sku": "items[0].sku"}))
    assert isinstance(source, WebhookSource)
    assert (source.event_type, source.event_source) == ("com.acme.order", "/shop")
    assert source.attributes == (("sku", ("items", 0, "sku")), ("subject", ("order", "id")))


# -- KafkaSource ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", ["sources.knative.dev/v1", "sources.knative.dev/v1beta1"])
def test_kafka_defaults(api_version: str) -> None:
    source = load_one(kafka(api_version))
    assert isinstance(source, KafkaSource)
    assert source.consumer_group == "knative-kafka-source-shop-src"
    assert (source.initial_offset, source.ordered, source.consumers, source.key_type) == (
        "latest",
        True,
        1,
        "string",
    )
    assert (
        source.delivery_spec(CTX)
        == DEFAULT_DELIVERY
        == DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.3, timeout=600.0)
    )


def test_kafka_all_fields_and_plan() -> None:
    text = kafka(
        labels={"kafkasources.sources.knative.dev/key-type": "int"},
        topics=["orders", "refunds"],
        consumerGroup="billing",
        initialOffset="earliest",
        ordering="unordered",
        consumers=3,
        net={"sasl": {"enable": False}, "tls": {"enable": False}},
        delivery={
            "retry": 2,
            "backoffDelay": "PT1S",
            "deadLetterSink": {
                "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "dlq"}
            },
        },
        ceOverrides={"extensions": {"team": "blue"}},
    )
    source = load_one(text)
    assert isinstance(source, KafkaSource)
    plan = source.plan(sink_uri="http://127.0.0.1:9/sink", ctx=CTX)
    assert plan.key == ("KafkaSource", "shop", "src")
    assert plan.spec == KafkaSourceConfig(
        namespace="shop",
        name="src",
        bootstrap_servers=("127.0.0.1:9092",),
        topics=("orders", "refunds"),
        consumer_group="billing",
        initial_offset="earliest",
        ordered=False,
        key_type="int",
        delivery=DeliverySpec(retry=2, backoff_delay=1.0, dead_letter_sink="http://127.0.0.1:8080/shop/dlq"),
        ce_overrides=(("team", "blue"),),
    )


# -- secrets and webhook plans --------------------------------------------------------------------


def test_github_plan_reads_the_secret_file(tmp_path: Path) -> None:
    (tmp_path / "shop" / "gh").mkdir(parents=True)
    (tmp_path / "shop" / "gh" / "token").write_bytes(b"s3cret\n")
    source = load_one(github(ceOverrides={"extensions": {"team": "blue"}}))
    assert isinstance(source, GitHubSource)
    plan = source.plan(
        sink_uri="http://s", router=WebhookRouter(), secrets=SecretResolver(secrets_dir=tmp_path, environ={})
    )
    assert plan.spec == GitHubConfig(
        namespace="shop",
        name="src",
        owner_and_repository="acme/shop",
        event_types=frozenset({"push"}),
        secret_token=b"s3cret",
        ce_overrides=(("team", "blue"),),
    )
    assert "s3cret" not in repr(plan.spec)


def test_missing_secret_is_carried_into_the_config(tmp_path: Path) -> None:
    source = load_one(gitlab())
    assert isinstance(source, GitLabSource)
    plan = source.plan(
        sink_uri="http://s", router=WebhookRouter(), secrets=SecretResolver(secrets_dir=tmp_path, environ={})
    )
    assert isinstance(plan.spec, GitLabConfig)
    assert plan.spec.secret_token is None
    assert "WEIR_SECRET_SHOP_GH_TOKEN" in plan.spec.secret_problem
    built = plan.build(_NoEmitter())
    status = built.status()
    assert (status.ready, status.reason) == (False, "SecretNotFound")


def test_webhook_plan_with_env_secret(tmp_path: Path) -> None:
    source = load_one(webhook(hmac={**TOKEN, "algorithm": "sha1"}))
    assert isinstance(source, WebhookSource)
    secrets = SecretResolver(secrets_dir=tmp_path, environ={"WEIR_SECRET_SHOP_GH_TOKEN": "from-env"})
    plan = source.plan(sink_uri="http://s", router=WebhookRouter(), secrets=secrets)
    assert isinstance(plan.spec, WebhookConfig)
    assert plan.spec.hmac == HmacCheck(secret=b"from-env", algorithm="sha1", prefix="sha1=")


class _NoEmitter:
    async def emit(self, event: object) -> bool:
        raise AssertionError("nothing is emitted here")


RESOLVED: list[tuple[str, dict[str, str], dict[str, bytes], bytes | None]] = [
    ("file", {}, {"shop/gh/token": b"abc"}, b"abc"),
    ("file, trailing newline removed once", {}, {"shop/gh/token": b"abc\n\n"}, b"abc\n"),
    ("file, CRLF removed", {}, {"shop/gh/token": b"abc\r\n"}, b"abc"),
    ("environment wins", {"WEIR_SECRET_SHOP_GH_TOKEN": "env"}, {"shop/gh/token": b"abc"}, b"env"),
    ("empty file is missing", {}, {"shop/gh/token": b"\n"}, None),
    ("other namespace is missing", {}, {"other/gh/token": b"abc"}, None),
    ("nothing", {}, {}, None),
]


@pytest.mark.parametrize(
    ("environ", "files", "expected"), [r[1:] for r in RESOLVED], ids=[r[0] for r in RESOLVED]
)
def test_secret_resolution(
    tmp_path: Path, environ: dict[str, str], files: dict[str, bytes], expected: bytes | None
) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    resolver = SecretResolver(secrets_dir=tmp_path, environ=environ)
    ref = SecretKeyRef(name="gh", key="token")
    if expected is None:
        with pytest.raises(SecretNotFound):
            resolver.resolve("shop", ref)
    else:
        assert resolver.resolve("shop", ref) == expected


@pytest.mark.parametrize(
    ("namespace", "name", "key", "variable"),
    [
        ("shop", "github-webhook", "token", "WEIR_SECRET_SHOP_GITHUB_WEBHOOK_TOKEN"),
        ("default", "gl.tokens", "secret.txt", "WEIR_SECRET_DEFAULT_GL_TOKENS_SECRET_TXT"),
    ],
)
def test_env_names(namespace: str, name: str, key: str, variable: str) -> None:
    assert env_name(namespace, SecretKeyRef(name=name, key=key)) == variable
