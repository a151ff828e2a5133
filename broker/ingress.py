"""Broker ingress: a raw ASGI 3 app taking CloudEvents at ``POST /<namespace>/<broker>``.

Status mapping (Knative MT ingress behaviour, plus 413 and 503 for limits and storage):

* ``202``: the events are durable (``Ingest.accept`` returned). Binary, structured (CE 1.0 and
  0.3) and batch (``application/cloudevents-batch+json``, all-or-nothing) are accepted.
* ``400`` (plain-text body saying what is wrong): invalid or unparsable event, path not of the
  form ``/<namespace>/<broker>`` (one trailing ``/`` tolerated), ``knativebrokerttl`` invalid or
  exhausted, a bad or duplicate framing header.
* ``404``: unknown Broker, or the path ``/``.
* ``405`` with ``Allow: POST, OPTIONS``: any method but POST and OPTIONS.
* ``OPTIONS`` → ``200`` with ``Allow`` and the CloudEvents webhook abuse-protection answer
  (``WebHook-Allowed-Origin: *``, ``WebHook-Allowed-Rate: *``).
* ``413``: the body exceeds ``max_event_bytes`` (by ``Content-Length`` or while reading).
* ``503`` with ``Retry-After`` (whole seconds, at least 1): the store refused or failed; the
  client may retry.
* ``500``: anything unexpected (logged; the body does not leak details).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

from broker.bindings import http as ce_http
from broker.errors import EventTooLarge, InvalidEvent, StoreError, TTLExhausted
from broker.ingest import Ingest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger(__name__)

_ALLOW = (b"allow", b"POST, OPTIONS")
_OPTIONS_HEADERS = [_ALLOW, (b"webhook-allowed-origin", b"*"), (b"webhook-allowed-rate", b"*")]
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
# Repeating one of these would make the event ambiguous, so it is refused rather than merged.
_SINGLE_HEADERS = frozenset({"content-type", "content-length"})


class BrokerDirectory(Protocol):
    """Which Brokers exist."""

    def log_for(self, namespace: str, name: str) -> str | None:
        """The store log of Broker ``namespace/name``, or ``None`` when there is no such Broker."""


class _Reject(Exception):
    """Answer the request with ``status`` and a plain-text ``reason``."""

    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class Disconnected(Exception):
    """The client went away before the body was complete; nothing can be answered."""


class IngressApp:
    """ASGI app for Broker ingress; see the module docstring for the status mapping."""

    def __init__(self, *, ingest: Ingest, directory: BrokerDirectory, max_event_bytes: int = 1 << 20) -> None:
        self._ingest = ingest
        self._directory = directory
        self._max_bytes = max_event_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"IngressApp serves HTTP only, not {scope['type']!r}")
        body = b""
        try:
            status, headers = await self._handle(scope, receive)
        except _Reject as reject:
            status, headers = reject.status, [_TEXT, *reject.headers]
            body = reject.reason.encode() + b"\n"
        except Disconnected:
            return
        except Exception:
            logger.exception("ingress failed on %s %s", scope.get("method"), scope.get("path"))
            status, headers, body = 500, [_TEXT], b"internal error\n"
        await _respond(send, status, body, headers)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]]]:
        method = scope["method"]
        if method == "OPTIONS":
            return 200, _OPTIONS_HEADERS
        if method != "POST":
            raise _Reject(405, f"method {method} not allowed; use POST", [_ALLOW])
        log = self._log_for(scope["path"])
        try:
            headers = request_headers(scope)
            body = await read_body(headers, receive, self._max_bytes)
            events = ce_http.decode(headers, body)
            await self._ingest.accept(log, events)
        except (InvalidEvent, TTLExhausted) as exc:
            raise _Reject(400, exc.message) from None
        except EventTooLarge as exc:
            raise _Reject(413, exc.message) from None
        except StoreError as exc:
            retry_after = max(1, math.ceil(exc.retry_after))
            logger.warning("store refused events for %s: %s", log, exc.message)
            raise _Reject(503, exc.message, [(b"retry-after", str(retry_after).encode())]) from None
        return 202, []

    def _log_for(self, path: str) -> str:
        if path == "/":
            raise _Reject(404, "no Broker at /; post to /<namespace>/<broker>")
        parts = (path[:-1] if path.endswith("/") else path).split("/")
        if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
            raise _Reject(400, f"path must be /<namespace>/<broker>, got {path!r}")
        log = self._directory.log_for(parts[1], parts[2])
        if log is None:
            raise _Reject(404, f"Broker {parts[1]}/{parts[2]} not found")
        return log


async def read_body(headers: Mapping[str, str], receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, refused as soon as it is known to be larger than ``max_bytes``.

    Raises :class:`~broker.errors.InvalidEvent` for a malformed Content-Length,
    :class:`~broker.errors.EventTooLarge` past the limit (declared or streamed), and
    :class:`Disconnected` when the client left before the body was complete.
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidEvent(f"invalid Content-Length {declared!r}")
        if int(declared) > max_bytes:
            raise EventTooLarge(f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise EventTooLarge(f"body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def request_headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (ASGI gives them lower-cased), values as ISO-8859-1.

    A repeated ``ce-*``, Content-Type or Content-Length header would make the event ambiguous:
    :class:`~broker.errors.InvalidEvent`.
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name in headers and (name in _SINGLE_HEADERS or name.startswith("ce-")):
            raise InvalidEvent(f"header {name} appears more than once")
        headers[name] = raw_value.decode("latin-1")
    return headers


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; the app holds no resources of its own."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
