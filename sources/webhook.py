"""WebhookSource (``sources.weir.dev/v1alpha1``): any POSTed JSON or form body as a CloudEvent.

The event: ``type`` and ``source`` as configured; ``id`` the ``X-Request-Id`` header when present,
else a new UUID v4; ``time`` when Weir received the request; ``datacontenttype``
``application/json``; then every configured attribute taken from the body by path.

Bodies: JSON (``Content-Type`` ``application/json``, any ``*/*+json``, or none) must parse, and
the data is the body byte for byte; a form (``application/x-www-form-urlencoded``) becomes a JSON
object of its fields (a field given more than once becomes a list of its values) and that object
is the data. Any other content type is ``415``.

Paths (:func:`parse_path`): dot-separated keys with optional ``[n]`` indexes, ``order.id``,
``items[0].sku``, ``[2].name`` (into a top-level array). A path that leads nowhere, or to
``null`` or ``""``, leaves the attribute out. Strings and booleans are kept, integers too within
the CloudEvents 32-bit range (else as text), other values (decimals, objects, arrays) become their
compact JSON text. An attribute that then breaks a CloudEvents rule (say ``time`` not RFC 3339)
makes the request a ``400``.

HMAC (optional): ``header`` (default ``X-Signature-256``) must be ``prefix`` (default
``<algorithm>=``) followed by the hex HMAC (``sha256`` or ``sha1``) of the raw body, keyed with
the secret; compared in constant time; wrong or missing is ``401`` and nothing is emitted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from broker.bindings.validate import validate
from broker.errors import InvalidEvent
from broker.event import AttrValue, Event
from sources.base import Emitter
from sources.webhooks import WebhookEndpoint, WebhookReply, WebhookRequest, WebhookRouter, deliver, rfc3339

Algorithm = Literal["sha256", "sha1"]
Path = tuple[str | int, ...]

RESERVED = frozenset({"specversion", "type", "source", "datacontenttype", "data", "data_base64"})
"""Attributes the body may not set: the configured ones and the content type Weir writes."""

_SEGMENT = re.compile(r"([^.\[\]]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
_INT32 = range(-(2**31), 2**31)
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True, kw_only=True)
class HmacCheck:
    """How requests are signed. ``header`` is lower-case; ``secret`` ``None`` means unresolved."""

    secret: bytes | None = field(default=None, repr=False)
    header: str = "x-signature-256"
    algorithm: Algorithm = "sha256"
    prefix: str = "sha256="

    def accepts(self, body: bytes, value: str | None) -> bool:
        """Whether ``value`` is ``prefix`` + hex HMAC of ``body`` (constant-time comparison)."""
        if self.secret is None or value is None or not value.startswith(self.prefix):
            return False
        expected = hmac.new(self.secret, body, getattr(hashlib, self.algorithm)).hexdigest().encode()
        given = value[len(self.prefix) :].strip().lower().encode("latin-1")
        return hmac.compare_digest(expected, given)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """One WebhookSource. ``attributes`` maps attribute names to parsed body paths."""

    namespace: str
    name: str
    type: str
    source: str
    hmac: HmacCheck | None = None
    secret_problem: str = ""
    attributes: tuple[tuple[str, Path], ...] = ()
    ce_overrides: tuple[tuple[str, str], ...] = ()


def parse_path(text: str) -> Path:
    """``order.id`` -> ``("order", "id")``, ``items[0].sku`` -> ``("items", 0, "sku")``.

    Raises ValueError for anything else (empty segments, a bracket that is not ``[digits]``).
    """
    parts: list[str | int] = []
    for i, segment in enumerate(text.split(".")):
        match = _SEGMENT.fullmatch(segment)
        if match is None or not segment or (i > 0 and not match.group(1)):
            raise ValueError(f"{text!r} is not a path like order.id or items[0].sku")
        if match.group(1):
            parts.append(match.group(1))
        parts.extend(int(n) for n in _INDEX.findall(match.group(2)))
    return tuple(parts)


def lookup(document: Any, path: Path) -> Any:
    """The value at ``path`` in ``document``, ``None`` when there is none."""
    value = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return None
            value = value[part]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def attribute_value(value: Any) -> AttrValue | None:
    """A body value as an attribute value (see the module docstring); ``None``: leave it out."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if value in _INT32 else str(value)
    return orjson.dumps(value).decode()


class WebhookSource(WebhookEndpoint):
    """Serves one WebhookSource; see the module docstring."""

    def __init__(self, config: WebhookConfig, *, emitter: Emitter, router: WebhookRouter) -> None:
        missing = config.hmac is not None and config.hmac.secret is None
        unavailable = ("SecretNotFound", config.secret_problem or "no HMAC secret") if missing else None
        super().__init__(router=router, namespace=config.namespace, name=config.name, unavailable=unavailable)
        self._config = config
        self._emitter = emitter

    async def handle(self, request: WebhookRequest) -> WebhookReply:
        config, headers = self._config, request.headers
        check = config.hmac
        if check is not None and not check.accepts(request.body, headers.get(check.header)):
            return WebhookReply(status=401, message=f"missing or invalid {check.header} signature")
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media == _FORM:
            document: Any = _form(request.body)
            data = orjson.dumps(document)
        elif not media or media.endswith(("/json", "+json")):
            try:
                document = orjson.loads(request.body)
            except orjson.JSONDecodeError as exc:
                return WebhookReply(status=400, message=f"body is not JSON: {exc}")
            data = request.body
        else:
            return WebhookReply(status=415, message=f"content type {media!r} is neither JSON nor a form")
        attributes: dict[str, AttrValue] = {
            "specversion": "1.0",
            "id": headers.get("x-request-id") or str(uuid.uuid4()),
            "source": config.source,
            "type": config.type,
            "time": rfc3339(request.received),
            "datacontenttype": "application/json",
        }
        for name, path in config.attributes:
            value = attribute_value(lookup(document, path))
            if value is not None:
                attributes[name] = value
        try:
            validate(attributes)
        except InvalidEvent as exc:
            return WebhookReply(status=400, message=f"the event would be invalid: {exc}")
        return await deliver(self._emitter, Event(attributes, data))


def _form(body: bytes) -> dict[str, Any]:
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}
