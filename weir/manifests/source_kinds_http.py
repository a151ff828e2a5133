"""Webhook source kinds: GitHubSource, GitLabSource (Knative) and WebhookSource (Weir's own).

GitHubSource (``sources.knative.dev/v1alpha1``, eventing-github's CRD): ``ownerAndRepository``
(``owner/repo`` or ``org``), ``eventTypes`` (at least one, from the CRD's list), ``secretToken``
(required: the HMAC key) and ``accessToken`` (accepted, never read: Weir does not call the GitHub
API, you create the webhook yourself), ``githubAPIURL``, ``secure``, ``serviceAccountName``
(accepted, unused locally).

GitLabSource (``sources.knative.dev/v1alpha1``, eventing-gitlab's CRD): ``projectUrl`` (absolute
http(s) URL), ``eventTypes`` (at least one webhook option, e.g. ``push_events``), ``secretToken``
(required), ``accessToken``, ``sslverify``, ``serviceAccountName`` (accepted, unused locally).

WebhookSource (``sources.weir.dev/v1alpha1``): ``type`` and ``source`` (required), optional
``hmac`` (``secretKeyRef`` required; ``header`` default ``X-Signature-256``; ``algorithm``
``sha256`` (default) or ``sha1``; ``prefix`` default ``<algorithm>=``, ``""`` for none) and
``attributes`` (attribute name -> body path, see :mod:`sources.webhook`).

Secrets are ``{secretKeyRef: {name, key}}`` resolved by :class:`weir.secrets.SecretResolver` when
the source is planned; a missing one does not fail the apply: the source runs, answers ``401``
and is ``Ready=False`` with reason ``SecretNotFound``. All three serve
``/sources/<namespace>/<name>`` (:mod:`sources.webhooks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sources.github
import sources.gitlab
import sources.webhook
from sources.base import Emitter, Source
from sources.manager import SourcePlan
from sources.webhooks import WebhookRouter
from weir.manifests.fields import MISSING, Problems, boolean, describe, join, obj, one_of, quote, string
from weir.manifests.kinds import Common, Kind
from weir.manifests.source_kinds import SOURCE_FIELDS, source_duck
from weir.manifests.source_model import SourceResource
from weir.secrets import SecretKeyRef, SecretNotFound, SecretResolver, is_valid_key

SOURCES_V1ALPHA1 = "sources.knative.dev/v1alpha1"
WEIR_SOURCES_V1ALPHA1 = "sources.weir.dev/v1alpha1"

GITHUB_EVENT_TYPES = (
    "check_suite", "commit_comment", "create", "delete", "deployment", "deployment_status", "fork",
    "gollum", "installation", "integration_installation", "issue_comment", "issues", "label", "member",
    "membership", "milestone", "organization", "org_block", "page_build", "ping", "project_card",
    "project_column", "project", "public", "pull_request", "pull_request_review",
    "pull_request_review_comment", "push", "release", "repository", "status", "team", "team_add", "watch",
)  # fmt: skip
"""The ``eventTypes`` enum of eventing-github's GitHubSource CRD."""

_OWNER_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:/[A-Za-z0-9._-]+)?")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ATTRIBUTE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class GitHubSource(SourceResource):
    """A validated GitHubSource."""

    owner_and_repository: str
    event_types: tuple[str, ...]
    secret_token: SecretKeyRef
    access_token: SecretKeyRef | None = None

    def plan(self, *, sink_uri: str, router: WebhookRouter, secrets: SecretResolver) -> SourcePlan:
        """The plan serving this source on ``router``; the secret is read now."""
        token, problem = _resolve(secrets, self.namespace, self.secret_token)
        config = sources.github.GitHubConfig(
            namespace=self.namespace,
            name=self.name,
            owner_and_repository=self.owner_and_repository,
            event_types=frozenset(self.event_types),
            secret_token=token,
            secret_problem=problem,
            ce_overrides=self.overrides,
        )

        def build(emitter: Emitter) -> Source:
            return sources.github.GitHubSource(config, emitter=emitter, router=router)

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


@dataclass(frozen=True, slots=True, kw_only=True)
class GitLabSource(SourceResource):
    """A validated GitLabSource."""

    project_url: str
    event_types: tuple[str, ...]
    secret_token: SecretKeyRef
    access_token: SecretKeyRef | None = None

    def plan(self, *, sink_uri: str, router: WebhookRouter, secrets: SecretResolver) -> SourcePlan:
        """The plan serving this source on ``router``; the secret is read now."""
        token, problem = _resolve(secrets, self.namespace, self.secret_token)
        config = sources.gitlab.GitLabConfig(
            namespace=self.namespace,
            name=self.name,
            project_url=self.project_url,
            event_types=frozenset(self.event_types),
            secret_token=token,
            secret_problem=problem,
            ce_overrides=self.overrides,
        )

        def build(emitter: Emitter) -> Source:
            return sources.gitlab.GitLabSource(config, emitter=emitter, router=router)

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookHmac:
    """``spec.hmac``; ``header`` lower-cased."""

    secret: SecretKeyRef
    header: str = "x-signature-256"
    algorithm: sources.webhook.Algorithm = "sha256"
    prefix: str = "sha256="


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSource(SourceResource):
    """A validated WebhookSource; ``attributes`` holds parsed body paths."""

    event_type: str
    event_source: str
    hmac: WebhookHmac | None = None
    attributes: tuple[tuple[str, sources.webhook.Path], ...] = ()

    def plan(self, *, sink_uri: str, router: WebhookRouter, secrets: SecretResolver) -> SourcePlan:
        """The plan serving this source on ``router``; an HMAC secret is read now."""
        check, problem = None, ""
        if self.hmac is not None:
            key, problem = _resolve(secrets, self.namespace, self.hmac.secret)
            check = sources.webhook.HmacCheck(
                secret=key, header=self.hmac.header, algorithm=self.hmac.algorithm, prefix=self.hmac.prefix
            )
        config = sources.webhook.WebhookConfig(
            namespace=self.namespace,
            name=self.name,
            type=self.event_type,
            source=self.event_source,
            hmac=check,
            secret_problem=problem,
            attributes=self.attributes,
            ce_overrides=self.overrides,
        )

        def build(emitter: Emitter) -> Source:
            return sources.webhook.WebhookSource(config, emitter=emitter, router=router)

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


def _resolve(secrets: SecretResolver, namespace: str, ref: SecretKeyRef) -> tuple[bytes | None, str]:
    try:
        return secrets.resolve(namespace, ref), ""
    except SecretNotFound as exc:
        return None, exc.message


def secret_ref(value: Any, path: str, problems: Problems, *, required: bool = False) -> SecretKeyRef | None:
    """``{secretKeyRef: {name, key, optional}}`` (Kubernetes ``SecretKeySelector``)."""
    if value is None:
        if required:
            problems.add(path, MISSING)
        return None
    fields = obj(value, path, problems, known=("secretKeyRef",))
    if fields is None:
        return None
    at = join(path, "secretKeyRef")
    if fields.get("secretKeyRef") is None:
        problems.add(at, MISSING)
        return None
    selector = obj(fields["secretKeyRef"], at, problems, known=("name", "key", "optional"))
    if selector is None:
        return None
    name = string(selector.get("name"), join(at, "name"), problems, required=True)
    key = string(selector.get("key"), join(at, "key"), problems, required=True)
    boolean(selector.get("optional"), join(at, "optional"), problems)
    if key is not None and not is_valid_key(key):
        problems.add(join(at, "key"), f"{quote(key)} is not a valid secret key ([-._a-zA-Z0-9]+)")
        return None
    if name is not None and "/" in name:
        problems.add(join(at, "name"), f"{quote(name)} is not a valid secret name")
        return None
    return None if name is None or key is None else SecretKeyRef(name=name, key=key)


def _event_types(value: Any, path: str, problems: Problems, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty list of distinct values from ``allowed``."""
    if value is None or value == []:
        problems.add(path, f"{MISSING} (at least one event type)")
        return ()
    if not isinstance(value, list):
        problems.add(path, f"must be a list, got {describe(value)}")
        return ()
    found = [one_of(item, join(path, i), problems, allowed) for i, item in enumerate(value)]
    return tuple(dict.fromkeys(item for item in found if item is not None))


def _github(common: Common, spec: dict[str, Any], problems: Problems) -> GitHubSource | None:
    sink, overrides = source_duck(spec, problems)
    owner = string(spec.get("ownerAndRepository"), "spec.ownerAndRepository", problems, required=True)
    if owner is not None and not _OWNER_REPO.fullmatch(owner):
        problems.add("spec.ownerAndRepository", f"{quote(owner)} is not owner/repository or an organization")
        owner = None
    event_types = _event_types(spec.get("eventTypes"), "spec.eventTypes", problems, GITHUB_EVENT_TYPES)
    token = secret_ref(spec.get("secretToken"), "spec.secretToken", problems, required=True)
    access = secret_ref(spec.get("accessToken"), "spec.accessToken", problems)
    _accepted(spec, problems, strings=("githubAPIURL", "serviceAccountName"), flags=("secure",))
    if sink is None or owner is None or token is None or not event_types:
        return None
    return GitHubSource(
        **common.fields(), sink=sink, ce_overrides=overrides, owner_and_repository=owner,
        event_types=event_types, secret_token=token, access_token=access,
    )  # fmt: skip


def _gitlab(common: Common, spec: dict[str, Any], problems: Problems) -> GitLabSource | None:
    sink, overrides = source_duck(spec, problems)
    url = string(spec.get("projectUrl"), "spec.projectUrl", problems, required=True)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path in ("", "/"):
            problems.add("spec.projectUrl", f"{quote(url)} is not an http(s) URL of a project")
            url = None
    allowed = tuple(sorted(sources.gitlab.WEBHOOK_OPTIONS))
    event_types = _event_types(spec.get("eventTypes"), "spec.eventTypes", problems, allowed)
    token = secret_ref(spec.get("secretToken"), "spec.secretToken", problems, required=True)
    access = secret_ref(spec.get("accessToken"), "spec.accessToken", problems)
    _accepted(spec, problems, strings=("serviceAccountName",), flags=("sslverify",))
    if sink is None or url is None or token is None or not event_types:
        return None
    return GitLabSource(
        **common.fields(), sink=sink, ce_overrides=overrides, project_url=url, event_types=event_types,
        secret_token=token, access_token=access,
    )  # fmt: skip


def _webhook(common: Common, spec: dict[str, Any], problems: Problems) -> WebhookSource | None:
    sink, overrides = source_duck(spec, problems)
    event_type = string(spec.get("type"), "spec.type", problems, required=True)
    event_source = string(spec.get("source"), "spec.source", problems, required=True)
    check = None if spec.get("hmac") is None else _hmac(spec["hmac"], "spec.hmac", problems)
    attributes = _attributes(spec.get("attributes"), "spec.attributes", problems)
    if sink is None or event_type is None or event_source is None or (spec.get("hmac") and check is None):
        return None
    return WebhookSource(
        **common.fields(), sink=sink, ce_overrides=overrides, event_type=event_type,
        event_source=event_source, hmac=check, attributes=attributes,
    )  # fmt: skip


def _hmac(value: Any, path: str, problems: Problems) -> WebhookHmac | None:
    fields = obj(value, path, problems, known=("secretKeyRef", "header", "algorithm", "prefix"))
    if fields is None:
        return None
    secret = secret_ref({"secretKeyRef": fields.get("secretKeyRef")}, path, problems, required=True)
    header = string(fields.get("header"), join(path, "header"), problems) or "X-Signature-256"
    if not _HEADER.fullmatch(header):
        problems.add(join(path, "header"), f"{quote(header)} is not an HTTP header name")
    chosen = one_of(fields.get("algorithm"), join(path, "algorithm"), problems, ("sha256", "sha1"))
    algorithm: sources.webhook.Algorithm = "sha1" if chosen == "sha1" else "sha256"
    raw_prefix = fields.get("prefix")
    if raw_prefix is not None and not isinstance(raw_prefix, str):
        problems.add(join(path, "prefix"), f"must be a string, got {describe(raw_prefix)}")
    prefix = raw_prefix if isinstance(raw_prefix, str) else f"{algorithm}="
    if secret is None:
        return None
    return WebhookHmac(secret=secret, header=header.lower(), algorithm=algorithm, prefix=prefix)


def _attributes(value: Any, path: str, problems: Problems) -> tuple[tuple[str, sources.webhook.Path], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.add(path, f"must be a map of attribute name to body path, got {describe(value)}")
        return ()
    found: list[tuple[str, sources.webhook.Path]] = []
    for name, raw in value.items():
        at = join(path, str(name))
        if not isinstance(name, str) or not _ATTRIBUTE.fullmatch(name):
            problems.add(at, "attribute names use only lower-case letters a-z and digits 0-9")
        elif name in sources.webhook.RESERVED:
            problems.add(at, f"{quote(name)} is set by Weir and cannot come from the body")
        elif (text := string(raw, at, problems, required=True)) is not None:
            try:
                found.append((name, sources.webhook.parse_path(text)))
            except ValueError as exc:
                problems.add(at, str(exc))
    return tuple(sorted(found))


def _accepted(
    spec: dict[str, Any], problems: Problems, *, strings: tuple[str, ...], flags: tuple[str, ...]
) -> None:
    """Fields Knative defines that only matter on Kubernetes: type-checked, then ignored."""
    for name in strings:
        string(spec.get(name), f"spec.{name}", problems)
    for name in flags:
        boolean(spec.get(name), f"spec.{name}", problems)


_SECRETS = ("accessToken", "secretToken", "serviceAccountName")
KINDS: dict[tuple[str, str], Kind] = {
    (SOURCES_V1ALPHA1, "GitHubSource"): Kind(
        fields=(*SOURCE_FIELDS, "ownerAndRepository", "eventTypes", *_SECRETS, "githubAPIURL", "secure"),
        build=_github,
    ),
    (SOURCES_V1ALPHA1, "GitLabSource"): Kind(
        fields=(*SOURCE_FIELDS, "projectUrl", "eventTypes", *_SECRETS, "sslverify"), build=_gitlab
    ),
    (WEIR_SOURCES_V1ALPHA1, "WebhookSource"): Kind(
        fields=(*SOURCE_FIELDS, "type", "source", "hmac", "attributes"), build=_webhook
    ),
}
"""The kinds this module adds (merged by :func:`weir.manifests.kinds.all_kinds`)."""
