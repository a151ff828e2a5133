"""GitHub, GitLab and generic webhook sources behind a real uvicorn server, into a real sink.

A :class:`WebhookRouter` is served on a free loopback port; each test registers its source
under its own name, POSTs to it with aiohttp, and reads what the RecordingSink received through
the real SinkEmitter and HttpSender.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import uvicorn

from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import DeliverySpec
from broker.errors import DeliveryError
from broker.event import AttrValue, Event
from sources.emitter import SinkEmitter
from sources.github import GitHubConfig, GitHubSource, attributes_for
from sources.gitlab import GitLabConfig, GitLabSource, event_type
from sources.webhook import HmacCheck, WebhookConfig, WebhookSource, attribute_value, parse_path
from sources.webhooks import WebhookEndpoint, WebhookRouter, webhook_path
from tests.sinks import RecordingSink, Reply, unused_url

SECRET = b"It's a Secret to Everybody"
JSON = "application/json"
FAST = DeliverySpec(retry=1, backoff_delay=0.01, timeout=2.0)
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
PUSH = (
    b'{"ref": "refs/heads/main", "compare": "https://github.com/acme/shop/compare/a10867b14bb7...000000000000",'
    b' "created": false, "deleted": false, "forced": true, "pusher": {"name": "octo"},'
    b' "repository": {"id": 35129377, "name": "shop", "owner": {"login": "acme"}},'
    b' "sender": {"login": "octo"}}'
)


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: it runs inside the test loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(slots=True)
class Harness:
    router: WebhookRouter
    url: str
    sink: RecordingSink
    sender: HttpSender
    http: aiohttp.ClientSession

    def emitter(self, path: str, fallback: Fallback | None = None) -> SinkEmitter:
        return SinkEmitter(
            sender=self.sender, url=self.sink.url_for(path), delivery=FAST, fallback=fallback or Fallback()
        )

    def github(self, name: str, **options: Any) -> GitHubSource:
        config = github_config(name, **options)
        return GitHubSource(config, emitter=self.emitter(f"/{name}"), router=self.router)

    def gitlab(self, name: str, **options: Any) -> GitLabSource:
        config = gitlab_config(name, **options)
        return GitLabSource(config, emitter=self.emitter(f"/{name}"), router=self.router)

    def webhook(self, name: str, **options: Any) -> WebhookSource:
        config = webhook_config(name, **options)
        return WebhookSource(config, emitter=self.emitter(f"/{name}"), router=self.router)

    async def post(
        self, name: str, body: bytes, headers: Mapping[str, str], *, method: str = "POST"
    ) -> tuple[int, str]:
        url = self.url + webhook_path("test", name)
        # Without this aiohttp labels every body application/octet-stream.
        skip = () if "Content-Type" in headers else ("Content-Type",)
        async with self.http.request(method, url, data=body, headers=headers, skip_auto_headers=skip) as r:
            return r.status, await r.text()


class Fallback:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event, error: DeliveryError) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
async def harness() -> AsyncIterator[Harness]:
    router = WebhookRouter(max_body_bytes=64 * 1024)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(router, lifespan="off", access_log=False, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 5
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    sender = HttpSender()
    try:
        async with RecordingSink() as sink, aiohttp.ClientSession() as http:
            yield Harness(router=router, url=f"http://127.0.0.1:{port}", sink=sink, sender=sender, http=http)
    finally:
        await sender.close()
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def running(source: WebhookEndpoint) -> AsyncIterator[WebhookEndpoint]:
    await source.start()
    try:
        yield source
    finally:
        await source.stop()


def unique() -> str:
    return "s" + uuid.uuid4().hex[:10]


def sign(body: bytes, secret: bytes = SECRET, algorithm: str = "sha256") -> str:
    return hmac.new(secret, body, getattr(hashlib, algorithm)).hexdigest()


def github_config(name: str, **options: Any) -> GitHubConfig:
    settings: dict[str, Any] = {"event_types": frozenset({"push", "issues"}), "secret_token": SECRET}
    settings.update(options)
    return GitHubConfig(namespace="test", name=name, owner_and_repository="acme/shop", **settings)


def github_headers(body: bytes, event: str = "push", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": "sha256=" + sign(body),
        **extra,
    }


def only(attributes: Mapping[str, AttrValue], without: tuple[str, ...] = ("time",)) -> dict[str, AttrValue]:
    return {k: v for k, v in attributes.items() if k not in without}


# -- GitHub ---------------------------------------------------------------------------------------


async def test_github_push_has_knatives_shape(harness: Harness) -> None:
    name = unique()
    async with running(harness.github(name)):
        status, _ = await harness.post(name, PUSH, github_headers(PUSH))
    assert status == 202
    [request] = harness.sink.requests(f"/{name}")
    assert request.event is not None
    assert RFC3339_UTC.fullmatch(str(request.event.get("time")))
    assert only(request.event.attributes) == {
        "specversion": "1.0",
        "id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "type": "dev.knative.source.github.push",
        "source": "https://github.com/acme/shop",
        "subject": "a10867b14bb7...000000000000",
        "datacontenttype": "application/json",
        "owner": "acme",
        "repository": "shop",
        "sender": "octo",
        "pusher": "octo",
        "ref": "refs/heads/main",
        "created": "false",
        "deleted": "false",
        "forced": "true",
    }
    assert request.event.data == PUSH  # byte for byte, whitespace included


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha256=" + sign(PUSH, b"other secret"), sign(PUSH), "sha1=" + sign(PUSH)],
    ids=["missing", "zeros", "wrong secret", "no prefix", "sha1 prefix"],
)
async def test_github_bad_signature_is_401_and_emits_nothing(harness: Harness, signature: str | None) -> None:
    name = unique()
    headers = github_headers(PUSH)
    del headers["X-Hub-Signature-256"]
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    async with running(harness.github(name)):
        status, text = await harness.post(name, PUSH, headers)
    assert (status, text) == (401, "missing or invalid X-Hub-Signature-256\n")
    assert harness.sink.requests(f"/{name}") == []


async def test_github_event_types_filter(harness: Harness) -> None:
    name = unique()
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 7}'
    async with running(harness.github(name)):
        status, text = await harness.post(name, body, github_headers(body, event="ping"))
    assert status == 202
    assert "ignored" in text
    assert harness.sink.requests(f"/{name}") == []


async def test_github_form_encoded_delivery(harness: Harness) -> None:
    name = unique()
    body = urlencode({"payload": PUSH.decode()}).encode()
    headers = github_headers(body, **{"Content-Type": "application/x-www-form-urlencoded"})
    async with running(harness.github(name)):
        status, _ = await harness.post(name, body, headers)
    assert status == 202
    [event] = harness.sink.events(f"/{name}")
    assert event.data == PUSH
    assert event.get("subject") == "a10867b14bb7...000000000000"


async def test_github_missing_secret_refuses_everything(harness: Harness) -> None:
    name = unique()
    source = harness.github(name, secret_token=None, secret_problem="secret test/gh key 'token' not found")
    async with running(source):
        status, text = await harness.post(name, PUSH, github_headers(PUSH))
        state = source.status()
    assert status == 401 and "not found" in text
    assert (state.ready, state.reason) == (False, "SecretNotFound")
    assert "not found" in state.message
    assert harness.sink.requests(f"/{name}") == []


async def test_github_missing_delivery_header_is_400(harness: Harness) -> None:
    name = unique()
    headers = github_headers(PUSH)
    del headers["X-GitHub-Delivery"]
    async with running(harness.github(name)):
        status, _ = await harness.post(name, PUSH, headers)
    assert status == 400


async def test_unreachable_sink_is_503_and_recorded(harness: Harness) -> None:
    name = unique()
    fallback = Fallback()
    emitter = SinkEmitter(sender=harness.sender, url=unused_url("/gone"), delivery=FAST, fallback=fallback)
    async with running(GitHubSource(github_config(name), emitter=emitter, router=harness.router)):
        status, _ = await harness.post(name, PUSH, github_headers(PUSH))
    assert status == 503
    assert [e.type for e in fallback.events] == ["dev.knative.source.github.push"]


ISSUES = {
    "action": "labeled",
    "issue": {"number": 2},
    "label": {"name": "bug"},
    "repository": {"name": "shop", "owner": {"login": "acme"}},
    "sender": {"login": "octo"},
}
SHAPES: list[tuple[str, str, dict[str, Any], dict[str, AttrValue]]] = [
    (
        "issues with label, no assignee",
        "issues",
        ISSUES,
        {"subject": "2", "owner": "acme", "repository": "shop", "sender": "octo", "action": "labeled",
         "label": "bug"},
    ),
    (
        "issue_comment keeps the last URL segment",
        "issue_comment",
        {"action": "created", "comment": {"html_url": "https://github.com/acme/shop/issues/2#issuecomment-39"}},
        {"subject": "2#issuecomment-39", "action": "created"},
    ),
    (
        "pull_request with installation",
        "pull_request",
        {"number": 5, "pull_request": {"number": 5}, "installation": {"id": 4242}, "action": "opened"},
        {"subject": "5", "installation": 4242, "action": "opened", "number": 5},
    ),
    (
        "gollum joins page names",
        "gollum",
        {"pages": [{"page_name": "Home"}, {"page_name": "Main"}]},
        {"subject": "Home,Main"},
    ),
    (
        "membership owner is the organization",
        "membership",
        {"member": {"id": 9}, "organization": {"login": "acme"}, "scope": "team", "action": "added"},
        {"subject": "9", "owner": "acme", "scope": "team", "action": "added"},
    ),
    ("release", "release", {"release": {"tag_name": "v1", "name": "I"}}, {"subject": "v1", "release": "I"}),
    ("large id is text", "check_run", {"check_run": {"id": 2**40}}, {"subject": str(2**40)}),
    ("unknown event has nothing", "workflow_job", {"action": "queued"}, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("event", "payload", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_github_subject_and_extensions(
    event: str, payload: dict[str, Any], expected: dict[str, AttrValue]
) -> None:
    assert attributes_for(event, payload) == expected


# -- GitLab ---------------------------------------------------------------------------------------


def gitlab_config(name: str, **options: Any) -> GitLabConfig:
    events = frozenset({"push_events", "job_events"})
    settings: dict[str, Any] = {"event_types": events, "secret_token": SECRET}
    settings.update(options)
    return GitLabConfig(namespace="test", name=name, project_url="https://gitlab.com/acme/shop", **settings)


GITLAB_PUSH = b'{"object_kind": "push", "ref": "refs/heads/main"}'


async def test_gitlab_push_has_knatives_shape(harness: Harness) -> None:
    name = unique()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode(), "Content-Type": JSON}
    async with running(harness.gitlab(name)):
        status, _ = await harness.post(name, GITLAB_PUSH, headers)
        job = {**headers, "X-Gitlab-Event": "Job Hook"}
        assert (await harness.post(name, b'{"object_kind": "build"}', job))[0] == 202
    assert status == 202
    push, build = harness.sink.events(f"/{name}")
    assert str(uuid.UUID(push.id)) == push.id
    assert only(push.attributes, ("time", "id")) == {
        "specversion": "1.0",
        "type": "dev.knative.sources.gitlab.push",
        "source": "https://gitlab.com/acme/shop",
        "datacontenttype": "application/json",
        "comgitlabevent": "Push Hook",
    }
    assert push.data == GITLAB_PUSH
    assert build.type == "dev.knative.sources.gitlab.job"


# A trailing space would not do for "suffix": HTTP parsers strip it as optional whitespace.
@pytest.mark.parametrize(
    "token", [None, "", "wrong", SECRET.decode() + "x"], ids=["missing", "empty", "wrong", "suffix"]
)
async def test_gitlab_bad_token_is_401(harness: Harness, token: str | None) -> None:
    name = unique()
    headers = {"X-Gitlab-Event": "Push Hook"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    async with running(harness.gitlab(name)):
        status, _ = await harness.post(name, GITLAB_PUSH, headers)
    assert status == 401
    assert harness.sink.requests(f"/{name}") == []


async def test_gitlab_event_types_filter(harness: Harness) -> None:
    name = unique()
    headers = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET.decode()}
    async with running(harness.gitlab(name)):
        status, text = await harness.post(name, b'{"object_kind": "merge_request"}', headers)
    assert status == 202 and "ignored" in text
    assert harness.sink.requests(f"/{name}") == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Push Hook", "dev.knative.sources.gitlab.push"),
        ("Tag Push Hook", "dev.knative.sources.gitlab.tag_push"),
        ("Merge Request Hook", "dev.knative.sources.gitlab.merge_request"),
        ("Confidential Issue Hook", "dev.knative.sources.gitlab.confidential_issue"),
        ("Wiki Page Hook", "dev.knative.sources.gitlab.wiki_page"),
        ("Push", None),
    ],
)
def test_gitlab_event_type(header: str, expected: str | None) -> None:
    assert event_type(header) == expected


# -- WebhookSource --------------------------------------------------------------------------------


def webhook_config(name: str, **options: Any) -> WebhookConfig:
    return WebhookConfig(namespace="test", name=name, type="com.acme.order", source="/shop/orders", **options)


ORDER = b'{"order": {"id": "o-17", "total": 12.5}, "items": [{"sku": "A-1", "qty": 2}], "paid": true}'
ORDER_ATTRIBUTES = (
    ("subject", parse_path("order.id")),
    ("sku", parse_path("items[0].sku")),
    ("qty", parse_path("items[0].qty")),
    ("total", parse_path("order.total")),
    ("paid", parse_path("paid")),
    ("coupon", parse_path("order.coupon.code")),
)


async def test_webhook_json_with_attributes(harness: Harness) -> None:
    name = unique()
    headers = {"Content-Type": "application/json", "X-Request-Id": "req-1"}
    async with running(harness.webhook(name, attributes=ORDER_ATTRIBUTES)):
        status, _ = await harness.post(name, ORDER, headers)
    assert status == 202
    [event] = harness.sink.events(f"/{name}")
    assert only(event.attributes) == {
        "specversion": "1.0",
        "id": "req-1",
        "type": "com.acme.order",
        "source": "/shop/orders",
        "datacontenttype": "application/json",
        "subject": "o-17",
        "sku": "A-1",
        "qty": "2",
        "total": "12.5",
        "paid": "true",
    }
    assert event.data == ORDER


async def test_webhook_form_body_becomes_json(harness: Harness) -> None:
    name = unique()
    body = b"order=o-9&tag=a&tag=b&empty="
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with running(harness.webhook(name, attributes=(("subject", parse_path("order")),))):
        status, _ = await harness.post(name, body, headers)
    assert status == 202
    [event] = harness.sink.events(f"/{name}")
    assert event.data == b'{"order":"o-9","tag":["a","b"],"empty":""}'
    assert event.get("subject") == "o-9"
    assert str(uuid.UUID(event.id)) == event.id


HMAC_CASES = [
    ("sha256 default header", HmacCheck(secret=SECRET), {"X-Signature-256": "sha256=" + sign(ORDER)}, 202),
    ("uppercase hex", HmacCheck(secret=SECRET), {"X-Signature-256": "sha256=" + sign(ORDER).upper()}, 202),
    ("wrong", HmacCheck(secret=SECRET), {"X-Signature-256": "sha256=" + sign(ORDER, b"x")}, 401),
    ("missing", HmacCheck(secret=SECRET), {}, 401),
    (
        "sha1, own header, no prefix",
        HmacCheck(secret=SECRET, header="x-shop-sig", algorithm="sha1", prefix=""),
        {"X-Shop-Sig": sign(ORDER, algorithm="sha1")},
        202,
    ),
    ("secret not found", HmacCheck(secret=None), {"X-Signature-256": "sha256=" + sign(ORDER)}, 401),
]


@pytest.mark.parametrize(
    ("check", "headers", "expected"), [c[1:] for c in HMAC_CASES], ids=[c[0] for c in HMAC_CASES]
)
async def test_webhook_hmac(
    harness: Harness, check: HmacCheck, headers: dict[str, str], expected: int
) -> None:
    name = unique()
    async with running(harness.webhook(name, hmac=check)):
        status, _ = await harness.post(name, ORDER, {"Content-Type": "application/json", **headers})
    assert status == expected
    assert len(harness.sink.requests(f"/{name}")) == (1 if expected == 202 else 0)


@pytest.mark.parametrize(
    ("body", "headers", "attributes", "expected"),
    [
        (b"plain", {"Content-Type": "text/plain"}, (), 415),
        (b"{nope", {"Content-Type": "application/json"}, (), 400),
        (b'{"when": "yesterday"}', {}, (("time", parse_path("when")),), 400),
        (b'{"when": "2024-05-01T10:00:00Z"}', {}, (("time", parse_path("when")),), 202),
    ],
    ids=["text/plain", "bad JSON", "time not RFC 3339", "time from body"],
)
async def test_webhook_rejections(
    harness: Harness, body: bytes, headers: dict[str, str], attributes: Any, expected: int
) -> None:
    name = unique()
    async with running(harness.webhook(name, attributes=attributes)):
        status, _ = await harness.post(name, body, headers)
    assert status == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("x", "x"), ("", None), (None, None), (True, True), (7, 7), (2**31, "2147483648"), (1.5, "1.5"),
     ({"a": [1]}, '{"a":[1]}')],
)  # fmt: skip
def test_attribute_values(value: Any, expected: AttrValue | None) -> None:
    assert attribute_value(value) == expected


# -- the router -----------------------------------------------------------------------------------


async def test_router_404_405_and_stop_drains(harness: Harness) -> None:
    name = unique()
    harness.sink.script(f"/{name}", Reply(delay=0.3))
    source = harness.webhook(name)
    assert (await harness.post(name, b"{}", {}))[0] == 404
    await source.start()
    assert source.status().ready
    assert source.status().extra == {"webhookPath": f"/sources/test/{name}"}
    assert (await harness.post(name, b"", {}, method="GET"))[0] == 405
    assert (await harness.post(name + "/extra", b"{}", {}))[0] == 404
    slow = asyncio.create_task(harness.post(name, b"{}", {}))
    await harness.sink.wait_for(1, path=f"/{name}")
    started = time.monotonic()
    await source.stop()  # returns only once the request in flight was answered
    assert time.monotonic() - started > 0.15
    assert (await slow)[0] == 202
    assert (await harness.post(name, b"{}", {}))[0] == 404
    assert source.status().ready is False


async def test_router_body_limit_is_413(harness: Harness) -> None:
    name = unique()
    async with running(harness.webhook(name)):
        status, _ = await harness.post(name, b"[" + b"1," * 40_000 + b"1]", {})
    assert status == 413
