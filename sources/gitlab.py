"""GitLabSource: GitLab webhook deliveries as the CloudEvents Knative's eventing-gitlab emits.

Shapes follow knative-extensions/eventing-gitlab ``pkg/adapter/receive_adapter.go`` in the
version that emits ``comgitlabevent`` and takes ``source`` from ``GITLAB_EVENT_SOURCE`` (the newest
adapter read; a 2025 ``webhook.go`` parser was seen but not the adapter code calling it, so later
changes to the event are not verified):

* ``type`` ``dev.knative.sources.gitlab.<event>``, ``<event>`` the ``X-Gitlab-Event`` header
  without its ``" Hook"`` suffix, lower-cased, spaces as ``_``: ``Push Hook`` -> ``push``,
  ``Merge Request Hook`` -> ``merge_request``, ``Job Hook`` -> ``job`` (the CRD's event type
  registry says ``build``; the adapter emits ``job``, and so does Weir);
* ``source`` ``spec.projectUrl``; ``id`` a new UUID v4 (the adapter's client fills it in);
  ``time`` when Weir received the request; extension ``comgitlabevent`` the header value;
  ``datacontenttype`` ``application/json``; data the JSON body.

``spec.eventTypes`` names GitLab's webhook options (``push_events``, ``merge_requests_events``,
...; see :data:`HOOK_OPTIONS`); a delivery whose hook is not among them gets ``202`` and is not
emitted. Differences from upstream: the body is passed on byte for byte (upstream re-serialises
its parsed struct), and a missing or wrong ``X-Gitlab-Token`` is ``401`` (upstream: ``400``),
compared in constant time.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field

import orjson

from broker.event import Event
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

EVENT_TYPE_PREFIX = "dev.knative.sources.gitlab."
EVENT_HEADER_EXTENSION = "comgitlabevent"
HOOK_SUFFIX = " Hook"

HOOK_OPTIONS: dict[str, str] = {
    "Push Hook": "push_events",
    "Tag Push Hook": "tag_push_events",
    "Issue Hook": "issues_events",
    "Confidential Issue Hook": "confidential_issues_events",
    "Note Hook": "note_events",
    "Confidential Note Hook": "confidential_note_events",
    "Merge Request Hook": "merge_requests_events",
    "Wiki Page Hook": "wiki_page_events",
    "Pipeline Hook": "pipeline_events",
    "Job Hook": "job_events",
    "Build Hook": "job_events",
    "Deployment Hook": "deployment_events",
}
"""``X-Gitlab-Event`` value -> the webhook option (``spec.eventTypes`` entry) that enables it."""

WEBHOOK_OPTIONS = frozenset(HOOK_OPTIONS.values())
"""Every value ``spec.eventTypes`` may hold (the GitLabSource CRD's enum)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GitLabConfig:
    """One GitLabSource. ``secret_token`` is ``None`` when it could not be resolved
    (``secret_problem`` says why); the endpoint then refuses every request."""

    namespace: str
    name: str
    project_url: str
    event_types: frozenset[str]
    secret_token: bytes | None = field(default=None, repr=False)
    secret_problem: str = ""
    ce_overrides: tuple[tuple[str, str], ...] = ()


def event_type(header: str) -> str | None:
    """The CloudEvent type for an ``X-Gitlab-Event`` value, ``None`` when it is not ``"... Hook"``."""
    if not header.endswith(HOOK_SUFFIX):
        return None
    return EVENT_TYPE_PREFIX + header.removesuffix(HOOK_SUFFIX).replace(" ", "_").lower()


def token_ok(secret: bytes, header: str | None) -> bool:
    """Whether ``X-Gitlab-Token`` equals the secret (compared in constant time)."""
    return header is not None and hmac.compare_digest(secret, header.encode("latin-1"))


class GitLabSource(WebhookEndpoint):
    """Serves one GitLabSource's webhook; see the module docstring for the event shape."""

    def __init__(self, config: GitLabConfig, *, emitter: Emitter, router: WebhookRouter) -> None:
        unavailable = missing_secret(config.secret_token, config.secret_problem)
        super().__init__(router=router, namespace=config.namespace, name=config.name, unavailable=unavailable)
        self._config = config
        self._emitter = emitter

    async def handle(self, request: WebhookRequest) -> WebhookReply:
        config, headers = self._config, request.headers
        assert config.secret_token is not None  # guaranteed by WebhookEndpoint._serve
        if not token_ok(config.secret_token, headers.get("x-gitlab-token")):
            return WebhookReply(status=401, message="missing or invalid X-Gitlab-Token")
        hook = headers.get("x-gitlab-event", "").strip()
        if not hook:
            return WebhookReply(status=400, message="header X-Gitlab-Event is not set")
        ce_type = event_type(hook)
        if ce_type is None:
            return WebhookReply(status=400, message=f"invalid webhook event type {hook!r}")
        if HOOK_OPTIONS.get(hook) not in config.event_types:
            return WebhookReply(status=202, message=f"ignored: {hook!r} is not enabled by spec.eventTypes")
        try:
            orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            return WebhookReply(status=400, message=f"body is not JSON: {exc}")
        attributes = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": config.project_url,
            "type": ce_type,
            "time": rfc3339(request.received),
            "datacontenttype": "application/json",
            EVENT_HEADER_EXTENSION: hook,
        }
        return await deliver(self._emitter, Event(attributes, request.body))
