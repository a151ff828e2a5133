"""A real HTTP sink for tests: scripted responses, every request recorded.

:class:`RecordingSink` is an aiohttp web server on a free ``127.0.0.1`` port, run inside the
test's event loop as an async context manager::

    async with RecordingSink() as sink:
        sink.script("/flaky", Reply(status=500), Reply(status=500))   # then the default (202)
        sink.script("/echo", then=Reply(event=my_reply))               # always reply with an event
        sink.respond("/dynamic", lambda req: Reply(status=200 if req.event else 400))
        ... point a subscriber at sink.url_for("/flaky") ...
        requests = await sink.wait_for(3, path="/flaky")                # waits with a deadline
        await eventually(lambda: dispatcher.stats()[name]["delivered"] == 1)  # any condition
        assert [r.event.id for r in requests if r.event] == [...]

Behaviour per request path (any method, any path):

1. a :meth:`respond` callable for the path, if set, decides the response;
2. else the next unused :class:`Reply` of the path's :meth:`script`;
3. else the script's ``then`` reply, else the sink's ``default`` (``202`` with no body).

Every request is recorded as a :class:`Recorded` (method, path, lower-cased headers, body, arrival
time on ``time.monotonic()``, and the CloudEvent decoded from it, or why decoding failed) *when it
arrives*, before any scripted delay. Nothing but loopback is ever bound.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from broker.bindings.http import decode, encode_binary, encode_structured
from broker.errors import WeirError
from broker.event import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One scripted response.

    ``status`` defaults to ``200`` when ``event`` is set (a reply event) and ``202`` otherwise.
    ``event`` is encoded as the response (binary mode, structured when ``structured``) and
    replaces ``body``; ``headers`` are added last, so they can override the encoding's.
    ``delay`` (seconds) is waited before answering, to simulate a slow subscriber.
    aiohttp always sends a ``Content-Type`` with a non-empty body (``application/octet-stream``
    by default), so a reply event with data should set ``datacontenttype``.
    """

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    event: Event | None = None
    structured: bool = False
    delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One request as the sink received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased (a repeated header keeps its last value)."""
    body: bytes
    at: float
    """``time.monotonic()`` when the request arrived, to measure spacing between attempts."""
    event: Event | None
    """The CloudEvent the request carried (binary or structured), ``None`` if it did not decode."""
    error: str | None
    """Why decoding failed, ``None`` when ``event`` is set."""


Responder = Callable[[Recorded], "Reply | Awaitable[Reply]"]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Poll ``check()`` (sync or async) until it is true; :class:`AssertionError` naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def unused_url(path: str = "/") -> str:
    """A loopback URL nothing listens on (connection refused), for transport-error tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class RecordingSink:
    """A scriptable, recording HTTP server on ``127.0.0.1``; see the module docstring."""

    def __init__(self, *, default: Reply | None = None, port: int = 0) -> None:
        """``port`` 0 picks a free port; a fixed one lets a test bring a sink back on the same URL."""
        self.default = default or Reply()
        self._scripts: dict[str, deque[Reply]] = {}
        self._then: dict[str, Reply] = {}
        self._responders: dict[str, Responder] = {}
        self._requests: list[Recorded] = []
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = port

    async def __aenter__(self) -> RecordingSink:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free loopback port (see :attr:`url`)."""
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: delayed handlers must not hold a test's teardown.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
            self._port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening; later requests get connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self._port}"

    def url_for(self, path: str = "/") -> str:
        """Absolute URL of ``path`` on this sink."""
        return self.url + (path if path.startswith("/") else "/" + path)

    def script(self, path: str, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests to ``path`` with ``replies`` in order, afterwards with ``then``
        (or the sink's default). Replaces any earlier script for the path."""
        self._scripts[path] = deque(replies)
        if then is None:
            self._then.pop(path, None)
        else:
            self._then[path] = then

    def respond(self, path: str, responder: Responder) -> None:
        """Let ``responder(request)`` (sync or async) build every response for ``path``."""
        self._responders[path] = responder

    def requests(self, path: str | None = None) -> list[Recorded]:
        """Requests received so far (to ``path`` only, when given), in arrival order."""
        return [r for r in self._requests if path is None or r.path == path]

    def events(self, path: str | None = None) -> list[Event]:
        """The CloudEvents of :meth:`requests` that carried a valid one."""
        return [r.event for r in self.requests(path) if r.event is not None]

    async def wait_for(self, count: int, *, path: str | None = None, timeout: float = 5.0) -> list[Recorded]:
        """Wait until at least ``count`` requests (to ``path``) arrived and return them all.

        Raises :class:`AssertionError` naming how many arrived when ``timeout`` seconds pass.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(path)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                where = "" if path is None else f" to {path}"
                raise AssertionError(f"expected {count} requests{where} within {timeout} s, got {len(found)}")
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                pass

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event: Event | None = None
        error: str | None = None
        try:
            decoded = decode(headers, body)
            if len(decoded) == 1:
                event = decoded[0]
            else:
                error = f"expected one event, got {len(decoded)}"
        except WeirError as exc:
            error = str(exc)
        recorded = Recorded(method=request.method, path=request.path, headers=headers, body=body,
                            at=at, event=event, error=error)
        self._requests.append(recorded)
        self._arrived.set()
        reply = await self._reply_for(recorded)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        return _response(reply)

    async def _reply_for(self, recorded: Recorded) -> Reply:
        responder = self._responders.get(recorded.path)
        if responder is not None:
            result = responder(recorded)
            return await result if inspect.isawaitable(result) else result
        queue = self._scripts.get(recorded.path)
        if queue:
            return queue.popleft()
        return self._then.get(recorded.path, self.default)


def _response(reply: Reply) -> web.Response:
    headers: dict[str, str] = {}
    body = reply.body
    if reply.event is not None:
        encoded, body = encode_structured(reply.event) if reply.structured else encode_binary(reply.event)
        headers.update(encoded)
    headers.update(reply.headers)
    status = reply.status if reply.status is not None else (200 if reply.event is not None else 202)
    return web.Response(status=status, headers=headers, body=body)
