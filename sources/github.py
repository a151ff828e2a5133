"""GitHubSource: GitHub webhook deliveries as the CloudEvents Knative's eventing-github emits.

Shapes follow knative-extensions/eventing-github ``pkg/common/handler.go`` and ``events.go`` in
their go-github v47 version (the newest read; the older go-playground version has the same
subjects and extensions). Not checked against a running adapter:

* ``type`` ``dev.knative.source.github.<X-GitHub-Event>``; ``source``
  ``https://github.com/<spec.ownerAndRepository>`` (also for GitHub Enterprise, as upstream);
  ``id`` the ``X-GitHub-Delivery`` header; ``time`` when Weir received the request (Knative's
  adapter client stamps the send time); ``datacontenttype`` ``application/json``.
* ``subject`` and the extensions (``owner``, ``repository``, ``sender``, ``action``,
  ``installation``, ...) per event from :data:`SHAPES`, e.g. ``push``: subject the last path
  segment of ``compare`` (``a10867b14bb7...000000000000``), extensions ``pusher``, ``ref``,
  ``created``, ``deleted``, ``forced``. No extension carries the raw event name: upstream sets
  none (the ``type`` suffix is the ``X-GitHub-Event`` value).

Where Weir differs, on purpose:

* ``data`` is the payload exactly as GitHub sent it (upstream re-serialises its parsed struct).
  A form-encoded delivery (``Content type: application/x-www-form-urlencoded`` in GitHub) is
  verified over the raw body and its ``payload`` field becomes the data.
* A field missing from the payload leaves its extension out (upstream dereferences some, e.g.
  ``installation`` on a plain repository webhook, and would fail the delivery); an empty subject
  is left out instead of failing the request.
* Only ``X-Hub-Signature-256`` is accepted (upstream's library falls back to SHA-1), and a bad or
  missing signature is ``401`` (upstream: ``400``). Events not in ``spec.eventTypes`` get ``202``
  and are not emitted (upstream relies on the webhook's own event list).
* Integer extension values beyond the CloudEvents 32-bit range are sent as strings.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from broker.event import AttrValue, Event
from sources.base import Emitter
from sources.webhooks import (
    WebhookEndpoint,
    WebhookReply,
    WebhookRequest,
    WebhookRouter,
    deliver,
    missing_secret,
    rfc3339,
)

EVENT_TYPE_PREFIX = "dev.knative.source.github."
SOURCE_PREFIX = "https://github.com/"
SIGNATURE_HEADER = "x-hub-signature-256"

Subject = Literal["text", "last", "pages"]
"""How the subject is read: the value as text, the last ``/`` segment of a URL, page names."""

_REPO = (("owner", "repository.owner.login"), ("repository", "repository.name"))
_ORG = (("owner", "organization.login"),)
_SENDER = (("sender", "sender.login"),)
_ACTION = (("action", "action"),)
_INSTALLATION = (("installation", "installation.id"),)
_INT32 = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class Shape:
    """Where an event's subject and extensions come from (dotted paths into the payload)."""

    subject: str
    how: Subject
    extensions: tuple[tuple[str, str], ...]


_INSTALLATION_SHAPE = Shape("installation.id", "text", (*_INSTALLATION, *_SENDER, *_ACTION))
SHAPES: dict[str, Shape] = {
    "check_run": Shape("check_run.id", "text", (*_REPO, *_SENDER, *_ACTION)),
    "check_suite": Shape("check_suite.id", "text", (*_REPO, *_SENDER, *_ACTION)),
    "commit_comment": Shape("comment.html_url", "last", (*_REPO, *_SENDER, *_ACTION)),
    "create": Shape("ref_type", "text", (*_REPO, *_SENDER, ("ref", "ref"))),
    "delete": Shape("ref_type", "text", (*_REPO, *_SENDER, ("ref", "ref"))),
    "deployment": Shape("deployment.id", "text", (*_REPO, *_SENDER)),
    "deployment_status": Shape("deployment.id", "text", (*_REPO, *_SENDER)),
    "discussion": Shape("discussion.id", "text", (*_REPO, *_SENDER)),
    "fork": Shape("forkee.id", "text", (*_REPO, *_SENDER)),
    "gollum": Shape("pages", "pages", (*_REPO, *_SENDER)),
    "installation": _INSTALLATION_SHAPE,
    "integration_installation": _INSTALLATION_SHAPE,
    "installation_repositories": _INSTALLATION_SHAPE,
    "integration_installation_repositories": _INSTALLATION_SHAPE,
    "issue_comment": Shape("comment.html_url", "last", (*_REPO, *_SENDER, *_ACTION)),
    "issues": Shape(
        "issue.number",
        "text",
        (*_REPO, *_SENDER, *_ACTION, ("label", "label.name"), ("assignee", "assignee.login")),
    ),
    "label": Shape("label.name", "text", (*_REPO, *_SENDER, *_ACTION, ("label", "label.name"))),
    "member": Shape("member.id", "text", (*_REPO, *_SENDER, *_ACTION)),
    "membership": Shape("member.id", "text", (*_ORG, ("scope", "scope"), *_SENDER, *_ACTION)),
    "milestone": Shape("milestone.number", "text", (*_REPO, *_SENDER, *_ACTION)),
    "organization": Shape("action", "text", (*_ORG, *_SENDER, *_ACTION)),
    "org_block": Shape("action", "text", (*_ORG, *_SENDER, *_ACTION)),
    "page_build": Shape("id", "text", (*_REPO, *_SENDER)),
    "ping": Shape("hook_id", "text", (*_REPO, *_SENDER)),
    "project_card": Shape("action", "text", (*_REPO, *_SENDER, *_ACTION)),
    "project_column": Shape("action", "text", (*_REPO, *_SENDER)),
    "project": Shape("action", "text", (*_REPO, *_SENDER, *_ACTION)),
    "public": Shape("repository.id", "text", (*_REPO, *_SENDER)),
    "pull_request": Shape(
        "pull_request.number",
        "text",
        (
            *_REPO,
            *_INSTALLATION,
            *_SENDER,
            *_ACTION,
            ("number", "number"),
            ("label", "label.name"),
            ("assignee", "assignee.login"),
        ),
    ),
    "pull_request_review_comment": Shape("comment.id", "text", (*_REPO, *_INSTALLATION, *_SENDER, *_ACTION)),
    "pull_request_review": Shape(
        "review.id", "text", (*_REPO, *_INSTALLATION, *_SENDER, *_ACTION, ("review", "review.state"))
    ),
    "push": Shape(
        "compare",
        "last",
        (
            *_REPO,
            *_INSTALLATION,
            *_SENDER,
            ("pusher", "pusher.name"),
            ("ref", "ref"),
            ("created", "created"),
            ("deleted", "deleted"),
            ("forced", "forced"),
        ),
    ),
    "release": Shape(
        "release.tag_name", "text", (*_REPO, *_INSTALLATION, *_SENDER, *_ACTION, ("release", "release.name"))
    ),
    "repository": Shape("repository.id", "text", (*_REPO, *_SENDER, *_ACTION)),
    "repository_vulnerability_alert": Shape("alert.id", "text", _ACTION),
    "security_advisory": Shape("security_advisory.ghsa_id", "text", _ACTION),
    "status": Shape(
        "sha", "text", (*_REPO, *_SENDER, ("state", "state"), ("name", "name"), ("context", "context"))
    ),
    "team": Shape("team.id", "text", (*_SENDER, *_ACTION)),
    "team_add": Shape("repository.id", "text", (*_REPO, *_SENDER)),
    "watch": Shape("repository.id", "text", (*_REPO, *_SENDER, *_ACTION)),
}
"""Subject and extensions per ``X-GitHub-Event`` value (upstream ``SubjectAndExtensionsFromGitHubEvent``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GitHubConfig:
    """One GitHubSource. ``secret_token`` is ``None`` when it could not be resolved
    (``secret_problem`` says why); the endpoint then refuses every request."""

    namespace: str
    name: str
    owner_and_repository: str
    event_types: frozenset[str]
    secret_token: bytes | None = field(default=None, repr=False)
    secret_problem: str = ""
    ce_overrides: tuple[tuple[str, str], ...] = ()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=<hex HMAC-SHA256 of body>`` (compared in constant time)."""
    if header is None or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header[7:].strip().lower().encode("latin-1"))


def attributes_for(event_type: str, payload: Any) -> dict[str, AttrValue]:
    """``subject`` and the extensions of a GitHub event (none for an unknown event type)."""
    shape = SHAPES.get(event_type)
    if shape is None:
        return {}
    found: dict[str, AttrValue] = {}
    subject = _subject(_at(payload, shape.subject), shape.how)
    if subject:
        found["subject"] = subject
    for name, path in shape.extensions:
        value = _attribute(_at(payload, path))
        if value is not None:
            found[name] = value
    return found


class GitHubSource(WebhookEndpoint):
    """Serves one GitHubSource's webhook; see the module docstring for the event shape."""

    def __init__(self, config: GitHubConfig, *, emitter: Emitter, router: WebhookRouter) -> None:
        unavailable = missing_secret(config.secret_token, config.secret_problem)
        super().__init__(router=router, namespace=config.namespace, name=config.name, unavailable=unavailable)
        self._config = config
        self._emitter = emitter

    async def handle(self, request: WebhookRequest) -> WebhookReply:
        config, headers = self._config, request.headers
        assert config.secret_token is not None  # guaranteed by WebhookEndpoint._serve
        if not signature_ok(config.secret_token, request.body, headers.get(SIGNATURE_HEADER)):
            return WebhookReply(status=401, message="missing or invalid X-Hub-Signature-256")
        event_type = headers.get("x-github-event", "")
        if not event_type:
            return WebhookReply(status=400, message="header X-GitHub-Event is not set")
        if event_type not in config.event_types:
            return WebhookReply(status=202, message=f"ignored: {event_type!r} is not in spec.eventTypes")
        delivery = headers.get("x-github-delivery", "")
        if not delivery:
            return WebhookReply(status=400, message="header X-GitHub-Delivery is not set")
        data = _payload(headers.get("content-type", ""), request.body)
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return WebhookReply(status=400, message=f"payload is not JSON: {exc}")
        attributes: dict[str, AttrValue] = {
            "specversion": "1.0",
            "id": delivery,
            "source": SOURCE_PREFIX + config.owner_and_repository,
            "type": EVENT_TYPE_PREFIX + event_type,
            "time": rfc3339(request.received),
            "datacontenttype": "application/json",
            **attributes_for(event_type, payload),
        }
        return await deliver(self._emitter, Event(attributes, data))


def _payload(content_type: str, body: bytes) -> bytes:
    """The JSON payload: the body, or the ``payload`` field of a form-encoded body."""
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        return body
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    return fields.get("payload", [""])[-1].encode("utf-8")


def _at(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _subject(value: Any, how: Subject) -> str:
    if how == "pages":
        pages = value if isinstance(value, list) else []
        return ",".join(str(p.get("page_name") or "") for p in pages if isinstance(p, dict))
    text = _attribute(value)
    if text is None or isinstance(text, bool):
        return ""
    text = str(text)
    if how == "last":
        return text.rsplit("/", 1)[1] if "/" in text else ""
    return text


def _attribute(value: Any) -> AttrValue | None:
    """A payload value as an extension value: strings and booleans as they are, integers as
    integers within the CloudEvents range (else as text); anything else is left out."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if value in _INT32 else str(value)
    return None
