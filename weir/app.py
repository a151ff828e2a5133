"""The one ASGI app Weir serves: admin API, in-process sinks, and Broker ingress side by side.

Routing is by path shape so the ingress hot path never goes through FastAPI:

* ``/healthz``, ``/readyz``, ``/metrics`` and ``/apis/...`` → the FastAPI admin API;
* ``/sinks/<namespace>/<name>`` → in-process sinks;
* ``/sources/<namespace>/<name>`` → webhook sources (GitHubSource, GitLabSource, WebhookSource);
* everything else → the raw ASGI Broker ingress (``POST /<namespace>/<broker>``), or, in a
  process run with ``--role dispatcher`` (no ingress), a 404 that says so.

Ingress paths have exactly two segments, so they never collide with the other prefixes.
"""

from __future__ import annotations

from typing import Any

from broker.ingress import IngressApp
from sources.webhooks import WebhookRouter
from weir.sinks import SinkRegistry

ASGIApp = Any

_ADMIN_EXACT = frozenset({"/healthz", "/readyz", "/metrics"})


class WeirApp:
    """Dispatches each request to the admin API, a sink, or the ingress."""

    def __init__(
        self, *, ingress: IngressApp | None, admin: ASGIApp, sinks: SinkRegistry, webhooks: WebhookRouter
    ) -> None:
        self._ingress = ingress
        self._admin = admin
        self._sinks = sinks
        self._webhooks = webhooks

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # uvicorn runs with lifespan="off"; no websockets
            return
        path: str = scope["path"]
        if path.startswith("/apis/") or path in _ADMIN_EXACT:
            await self._admin(scope, receive, send)
        elif path.startswith("/sinks/") and path.count("/") >= 3:
            await self._sinks.asgi(scope, receive, send)
        elif path.startswith("/sources/") and path.count("/") >= 3:
            await self._webhooks(scope, receive, send)
        elif self._ingress is not None:
            await self._ingress(scope, receive, send)
        else:
            await _no_ingress(send)


_NO_INGRESS = (
    b"this Weir process runs with --role dispatcher and accepts no events; post them to an "
    b"ingress replica\n"
)


async def _no_ingress(send: Any) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(_NO_INGRESS))]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": _NO_INGRESS})
