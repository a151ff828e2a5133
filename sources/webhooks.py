"""The webhook endpoints of sources: one ASGI app serving ``POST /sources/<namespace>/<name>``.

Weir routes the ``/sources/`` prefix to a :class:`WebhookRouter`. Every webhook source
(GitHubSource, GitLabSource, WebhookSource) is a :class:`WebhookEndpoint`: starting it
registers its handler under its namespace and name, stopping it unregisters it and waits for
the requests it is serving. The URL to configure in GitHub or GitLab is Weir's base URL plus
:func:`webhook_path`.

Status mapping:

* ``202``: the sink accepted the event, or the request was valid but its event type is not in
  the source's ``eventTypes`` (the body says it was ignored; nothing is emitted).
* ``400``: not the request the source expects (a required header missing, a body that is not
  JSON); ``415``: a body type the source does not read.
* ``401``: signature or token missing or wrong, or the source has no secret to check it with
  (its status says why). Nothing is emitted.
* ``404``: no source at the path, or a path that is not ``/sources/<namespace>/<name>`` (one
  trailing ``/`` is tolerated). ``405`` with ``Allow: POST``: any other method.
* ``413``: the body exceeds ``max_body_bytes`` (default 25 MiB, GitHub's payload limit).
* ``503``: the sink did not accept the event after every retry; the emitter recorded it (dead-letter
  sink, the Broker's dead-letter record, or the log). The sender may retry; a duplicate is then
  possible, a loss is not.
* ``500``: anything unexpected (logged, no details in the body).

Answering only after the emitter returned (rather than at once) makes a ``202`` a promise: GitHub
and GitLab mark any other answer as a failed delivery and offer to redeliver it. The price is that
the sender waits for the sink's retries; GitHub gives up after 10 seconds (it then shows a
failure although the event may still arrive, so a redelivery can duplicate it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.event import Event
from sources.base import Emitter, SourceStatus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("weir.sources.webhooks")

PREFIX = "/sources/"
MAX_BODY_BYTES = 25 << 20
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRequest:
    """One POST: header names lower-cased (a repeated header keeps its last value), the raw body,
    and when it arrived (UTC)."""

    headers: Mapping[str, str]
    body: bytes
    received: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookReply:
    """The answer: an HTTP status and a one-line plain-text message."""

    status: int
    message: str = ""


Handler = Callable[[WebhookRequest], Awaitable[WebhookReply]]


def webhook_path(namespace: str, name: str) -> str:
    """The path a source's webhook is served at."""
    return f"{PREFIX}{namespace}/{name}"


def rfc3339(moment: datetime) -> str:
    """``moment`` (aware) in UTC as RFC 3339 with microseconds, ``Z`` for UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def deliver(emitter: Emitter, event: Event) -> WebhookReply:
    """Emit ``event``: ``202`` when the sink accepted it, ``503`` when it was recorded instead."""
    if await emitter.emit(event):
        return WebhookReply(status=202, message="accepted")
    return WebhookReply(
        status=503, message="the sink did not accept the event; it was recorded as undelivered"
    )


@dataclass(slots=True)
class _Entry:
    handler: Handler
    busy: int = 0
    idle: asyncio.Event | None = None


class WebhookRouter:
    """ASGI app for ``POST /sources/<namespace>/<name>``; see the module docstring."""

    def __init__(self, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._max_bytes = max_body_bytes
        self._entries: dict[tuple[str, str], _Entry] = {}

    def register(self, namespace: str, name: str, handler: Handler) -> None:
        """Serve ``handler`` at :func:`webhook_path` (replacing any handler there)."""
        self._entries[namespace, name] = _Entry(handler=handler)

    async def unregister(self, namespace: str, name: str) -> None:
        """Stop serving ``namespace/name`` (404 from now on) and wait for its requests in flight."""
        entry = self._entries.pop((namespace, name), None)
        if entry is not None and entry.busy:
            entry.idle = asyncio.Event()
            await entry.idle.wait()

    def registered(self) -> list[tuple[str, str]]:
        """``(namespace, name)`` of every registered source."""
        return list(self._entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        entry = self._entries.get(_key(scope["path"]) or ("", ""))
        if entry is None:
            await _respond(send, 404, f"no source at {scope['path']}")
            return
        if scope["method"] != "POST":
            await _respond(
                send, 405, f"method {scope['method']} not allowed; use POST", [(b"allow", b"POST")]
            )
            return
        entry.busy += 1
        try:
            reply = await self._serve(entry, scope, receive)
            if reply is not None:
                await _respond(send, reply.status, reply.message)
        finally:
            entry.busy -= 1
            if not entry.busy and entry.idle is not None:
                entry.idle.set()

    async def _serve(self, entry: _Entry, scope: Scope, receive: Receive) -> WebhookReply | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return WebhookReply(status=413, message=f"body exceeds the limit of {self._max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                return WebhookReply(status=413, message=f"body exceeds the limit of {self._max_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        request = WebhookRequest(headers=headers, body=b"".join(chunks), received=datetime.now(UTC))
        try:
            return await entry.handler(request)
        except Exception:
            log.exception("webhook handler for %s failed", scope["path"])
            return WebhookReply(status=500, message="internal error")


def missing_secret(secret: bytes | None, problem: str) -> tuple[str, str] | None:
    """The ``unavailable`` (reason, message) of an endpoint whose secret could not be resolved."""
    return ("SecretNotFound", problem or "no secret token") if secret is None else None


class WebhookEndpoint:
    """A webhook source's lifecycle: registered while running, unregistered (and drained) on stop.

    Subclasses implement :meth:`handle`. ``unavailable`` (reason, message), when set, is why the
    source cannot verify requests (e.g. its secret was not found): every request then gets ``401``
    and :meth:`status` reports ``Ready=False`` with that reason.
    """

    def __init__(
        self, *, router: WebhookRouter, namespace: str, name: str, unavailable: tuple[str, str] | None = None
    ) -> None:
        self._router = router
        self._namespace = namespace
        self._name = name
        self._unavailable = unavailable
        self._running = False

    async def start(self) -> None:
        self._router.register(self._namespace, self._name, self._serve)
        self._running = True

    async def stop(self) -> None:
        self._running = False
        await self._router.unregister(self._namespace, self._name)

    def status(self) -> SourceStatus:
        extra = {"webhookPath": webhook_path(self._namespace, self._name)}
        if self._unavailable is not None:
            reason, message = self._unavailable
            return SourceStatus(ready=False, reason=reason, message=message, extra=extra)
        if not self._running:
            return SourceStatus(ready=False, reason="NotRunning", message="the endpoint is not served")
        return SourceStatus(ready=True, extra=extra)

    async def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify ``request``, turn it into an event and emit it."""
        raise NotImplementedError

    async def _serve(self, request: WebhookRequest) -> WebhookReply:
        if self._unavailable is not None:
            return WebhookReply(status=401, message=f"cannot verify requests: {self._unavailable[1]}")
        return await self.handle(request)


def _key(path: str) -> tuple[str, str] | None:
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].removesuffix("/").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


async def _respond(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (message + "\n").encode() if message else b""
    all_headers = [_TEXT, *(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
