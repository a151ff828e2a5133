"""The aiohttp implementation of :class:`~broker.delivery.sender.Sender`.

One shared ``aiohttp.ClientSession`` (keep-alive connection pool, at most ``limit`` open
connections) serves every delivery of the process. Every aiohttp and asyncio failure is mapped
here to :class:`~broker.errors.TransportError`, so no caller catches a library exception.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import aiohttp

from broker.bindings.http import encode_binary, encode_structured, has_event
from broker.delivery.sender import Response
from broker.errors import BadResponse, InvalidEvent, TransportError
from broker.event import Event
from broker.slots import Slots

MAX_RESPONSE_BYTES = 1 << 20
"""Response bodies are read up to 1 MiB; a reply event larger than that is refused."""

_CHUNK = 64 * 1024
_SKIP_CONTENT_TYPE = ("Content-Type",)


class HttpSender:
    """Posts CloudEvents over HTTP/1.1 with a shared, lazily created aiohttp session.

    ``limit`` caps requests in flight, and so open connections, across all destinations; a
    request beyond it waits for its turn, and its timeout starts when it has one.
    ``default_timeout`` (seconds) bounds an attempt whose caller passes ``timeout=None``
    (``None``: no bound).
    Status codes are never raised: a 5xx is a :class:`Response` like a 2xx. Response bodies
    are truncated to ``max_response_bytes``, except a ``200`` that claims to carry a CloudEvent:
    a reply that large raises :class:`~broker.errors.BadResponse` (not retriable).
    """

    def __init__(
        self,
        *,
        limit: int = 256,
        default_timeout: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._limit = limit
        self._default_timeout = default_timeout
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        # Requests beyond the pool's connections wait here, before aiohttp builds and times
        # them, not in its pool: with 64 deliveries in flight for each of 50 busy Triggers that
        # delivered about a quarter more per second and held 20 MB less (bench/RESULTS.md, S3).
        # An attempt's timeout then counts from the moment a connection is free.
        self._slots = Slots(limit)

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the running loop, not the constructing one.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30.0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                # Events are delivered byte-for-byte; no cookies or compression negotiation.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def send(
        self,
        url: str,
        event: Event,
        *,
        structured: bool = False,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST ``event`` to ``url``; see :meth:`broker.delivery.sender.Sender.send`.

        Raises :class:`TransportError` with messages like ``"connection refused to <url>"``,
        ``"DNS lookup failed for <url>: ..."`` or ``"timeout after 2.0 s posting to <url>"``; its
        ``body`` holds that text (UTF-8). An invalid URL is a non-retriable TransportError.
        """
        try:
            ce_headers, body = encode_structured(event) if structured else encode_binary(event)
        except InvalidEvent as exc:
            # Permanent: retrying cannot help, and the dead-letter path records it.
            raise _transport(f"cannot encode event {event.id} for {url}: {exc}", retriable=False) from None
        request_headers = dict(ce_headers)
        if headers:
            # The encoding's names are lower-case; lower-casing these avoids duplicate headers.
            request_headers.update((k.lower(), v) for k, v in headers.items())
        bound = self._default_timeout if timeout is None else timeout
        try:
            async with self._slots:
                return await self._post(url, request_headers, body, _timeout(bound))
        except TimeoutError:
            raise _transport(f"timeout after {bound} s posting to {url}") from None
        except aiohttp.InvalidURL as exc:
            raise _transport(f"invalid URL {url}: {exc}", retriable=False) from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise _transport(f"DNS lookup failed for {url}: {exc.os_error}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise _transport(f"connection refused to {url}") from None
            raise _transport(f"cannot connect to {url}: {exc.os_error}") from None
        except aiohttp.ServerDisconnectedError:
            raise _transport(f"connection closed by {url} before a response") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _transport(f"transport error posting to {url}: {exc!r}") from None

    async def _post(
        self, url: str, headers: dict[str, str], body: bytes, timeout: aiohttp.ClientTimeout
    ) -> Response:
        session = self._client()
        # Without a Content-Type (event without datacontenttype) aiohttp would add
        # application/octet-stream, which the receiver would read as the event's datacontenttype.
        # Asked per request only then: aiohttp rebuilds its skip list on every request given one.
        skip = None if "content-type" in headers else _SKIP_CONTENT_TYPE
        async with session.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout, skip_auto_headers=skip
        ) as resp:
            received = {k.lower(): v for k, v in resp.headers.items()}
            reply = resp.status == 200 and has_event(received)
            content = await self._read(resp)
            if len(content) > self._max_response_bytes:
                if reply:
                    raise BadResponse(
                        f"reply from {url} exceeds {self._max_response_bytes} bytes",
                        status=resp.status,
                        body=content[: self._max_response_bytes],
                        retriable=False,
                    )
                content = content[: self._max_response_bytes]
            return Response(status=resp.status, headers=received, body=content)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """Up to ``max_response_bytes + 1`` bytes of the body (one more tells "too large")."""
        cap = self._max_response_bytes + 1
        chunks: list[bytes] = []
        size = 0
        while size < cap:
            chunk = await resp.content.read(min(_CHUNK, cap - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        """Close the session and its pooled connections. Sending again opens a new session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's whole-attempt bound (connect, send, response and body) for ``seconds``."""
    # aiohttp rounds bounds of 5 s and more up to a whole second of the loop clock by default;
    # retry schedules count from the moment an attempt gives up, so keep the bound exact.
    return aiohttp.ClientTimeout(total=seconds, ceil_threshold=math.inf)


def _transport(message: str, *, retriable: bool | None = None) -> TransportError:
    return TransportError(message, body=message.encode(), retriable=retriable)
