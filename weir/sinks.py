"""In-process sinks: ``IntegrationSink`` with ``spec.log`` prints each event it receives.

Each sink is addressable at ``<base>/sinks/<namespace>/<name>`` (so curl and other Brokers can post to it
over HTTP), and :class:`LocalSender` short-cuts deliveries whose URL points at a sink of this process, so
the dispatcher does not pay an HTTP round trip to itself and shutdown order cannot strand them.

The printed form follows Knative's event display::

    ☁️  cloudevents.Event
    Context Attributes,
      specversion: 1.0
      type: dev.example.order
      ...
    Extensions,
      knativearrivaltime: 2026-11-22T10:00:00.000000Z
    Data,
      {"id": 1}
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from broker.bindings import http as binding
from broker.delivery.sender import Response, Sender
from broker.errors import EventTooLarge, InvalidEvent, StoreError, TTLExhausted
from broker.event import Event, canonical
from broker.ingest import Ingest
from broker.ingress import BrokerDirectory, Disconnected, read_body, request_headers

log = logging.getLogger("weir.sinks")

_CONTEXT_ORDER = ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype")


def display(event: Event, *, show_headers: bool = True, show_body: bool = True) -> str:
    """Render ``event`` the way Knative's event display does."""
    lines = ["☁️  cloudevents.Event"]
    if show_headers:
        lines.append("Context Attributes,")
        for name in _CONTEXT_ORDER:
            value = event.get(name)
            if value is not None:
                lines.append(f"  {name}: {canonical(value)}")
        extensions = sorted(k for k in event.attributes if k not in _CONTEXT_ORDER)
        if extensions:
            lines.append("Extensions,")
            lines.extend(f"  {name}: {canonical(event.attributes[name])}" for name in extensions)
    if show_body and event.data is not None:
        lines.append("Data,")
        lines.append("  " + _render_data(event).replace("\n", "\n  "))
    return "\n".join(lines)


def _render_data(event: Event) -> str:
    data = event.data or b""
    content_type = (event.text("datacontenttype") or "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data>"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSink:
    """An ``IntegrationSink`` with ``spec.log``: prints every event to ``out`` (stdout by default)."""

    namespace: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    out: Callable[[], TextIO] = lambda: sys.stdout

    def receive(self, event: Event) -> None:
        text = display(
            event,
            show_headers=bool(self.options.get("showHeaders", True)),
            show_body=bool(self.options.get("showBody", True)),
        )
        stream = self.out()
        stream.write(text + "\n")
        stream.flush()


class SinkRegistry:
    """The in-process sinks of this Weir, by URL path ``/sinks/<namespace>/<name>``."""

    def __init__(self, base_url: str, *, max_event_bytes: int = 1 << 20) -> None:
        self.base_url = base_url.rstrip("/")
        self._max_bytes = max_event_bytes
        self._sinks: dict[tuple[str, str], LogSink] = {}

    def url_for(self, namespace: str, name: str) -> str | None:
        """The URL of sink ``namespace/name``, or ``None`` when no such sink is registered."""
        return self.address(namespace, name) if (namespace, name) in self._sinks else None

    def address(self, namespace: str, name: str) -> str:
        """The URL a sink ``namespace/name`` is served at while it is registered."""
        return f"{self.base_url}/sinks/{namespace}/{name}"

    def replace(self, sinks: Mapping[tuple[str, str], LogSink]) -> None:
        self._sinks = dict(sinks)

    def lookup_url(self, url: str) -> LogSink | None:
        prefix = f"{self.base_url}/sinks/"
        if not url.startswith(prefix):
            return None
        return self._lookup_path(url[len(prefix) :])

    def _lookup_path(self, rest: str) -> LogSink | None:
        parts = rest.strip("/").split("/")
        if len(parts) != 2:
            return None
        return self._sinks.get((parts[0], parts[1]))

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI app for ``POST /sinks/<namespace>/<name>``: 202 on a valid event, 400/404/405/413
        otherwise; the body is read and limited exactly as the Broker ingress does."""
        sink = self._lookup_path(scope["path"][len("/sinks/") :])
        if sink is None:
            await _reply(send, 404, b"no such sink\n")
            return
        if scope["method"] != "POST":
            await _reply(send, 405, b"method not allowed\n", [(b"allow", b"POST")])
            return
        try:
            headers = request_headers(scope)
            events = binding.decode(headers, await read_body(headers, receive, self._max_bytes))
        except InvalidEvent as exc:
            await _reply(send, 400, f"{exc}\n".encode())
            return
        except EventTooLarge as exc:
            await _reply(send, 413, f"{exc}\n".encode())
            return
        except Disconnected:
            return
        for event in events:
            sink.receive(event)
        await _reply(send, 202, b"")


async def _answer(response: Response) -> Response:
    return response


async def _reply(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


class LocalSender:
    """A :class:`~broker.delivery.sender.Sender` that hands events for this Weir's own in-process
    sinks and Brokers over directly, without an HTTP round trip to itself.

    An event for one of this Weir's Brokers is accepted as its ingress would (``knativebrokerttl``
    and arrival time included) and answered like it: ``202`` once stored, ``400`` for an invalid
    event or an exhausted TTL, ``503`` with ``Retry-After`` when the store refused. That keeps
    Broker destinations working in a ``--role dispatcher`` process, which serves no ingress.
    """

    def __init__(self, inner: Sender, sinks: SinkRegistry) -> None:
        self._inner = inner
        self._sinks = sinks
        self._brokers: tuple[str, BrokerDirectory, Ingest] | None = None

    def serve_brokers(self, base_url: str, directory: BrokerDirectory, ingest: Ingest) -> None:
        """Deliver events for ``base_url/<namespace>/<broker>`` of ``directory`` through ``ingest``."""
        self._brokers = (base_url.rstrip("/") + "/", directory, ingest)

    def send(
        self,
        url: str,
        event: Event,
        *,
        structured: bool = False,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """See :meth:`broker.delivery.sender.Sender.send`.

        For any other destination this is the inner sender's own coroutine, so the common case
        adds no frame to every resumption of the delivery.
        """
        sink = self._sinks.lookup_url(url)
        if sink is not None:
            sink.receive(event)
            return _answer(Response(status=202, headers={}, body=b""))
        log = self._broker_log(url)
        if log is None:
            return self._inner.send(url, event, structured=structured, timeout=timeout, headers=headers)
        return self._to_broker(log, event)

    async def _to_broker(self, log: str, event: Event) -> Response:
        assert self._brokers is not None
        try:
            await self._brokers[2].accept(log, [event])
        except (InvalidEvent, TTLExhausted) as exc:
            return Response(status=400, headers={}, body=exc.message.encode())
        except StoreError as exc:
            retry_after = str(max(1, math.ceil(exc.retry_after)))
            return Response(status=503, headers={"retry-after": retry_after}, body=exc.message.encode())
        return Response(status=202, headers={}, body=b"")

    def _broker_log(self, url: str) -> str | None:
        if self._brokers is None or not url.startswith(self._brokers[0]):
            return None
        parts = url[len(self._brokers[0]):].rstrip("/").split("/")
        if len(parts) != 2 or not all(parts):
            return None
        return self._brokers[1].log_for(parts[0], parts[1])

    async def close(self) -> None:
        await self._inner.close()
