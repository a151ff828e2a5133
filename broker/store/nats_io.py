"""JetStream plumbing for the NATS store: connecting, error mapping, streams, buckets.

Every nats-py exception is mapped here (:func:`mapped`) to the one error tree of
:mod:`broker.errors`: a full stream (JetStream error 10077, or 10047 insufficient resources)
is :class:`~broker.errors.StoreFull`; a message above the server's ``max_payload`` is
:class:`~broker.errors.EventTooLarge`; anything else (timeouts, no responders, a closed or
reconnecting connection, other API errors) is :class:`~broker.errors.StoreUnavailable`. All
are raised with ``retry_after`` :data:`RETRY_AFTER` seconds.

With ``create=false`` a stream or bucket that does not exist is a configuration problem, not an
outage: :func:`not_created` makes the :class:`~broker.errors.StoreError` (not retriable) that
names it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from broker.errors import EventTooLarge, StoreError, StoreFull, StoreUnavailable, WeirError
from broker.store.nats_config import NatsConfig

log = logging.getLogger(__name__)

RETRY_AFTER = 1.0
"""Seconds a caller should wait after a store error before trying again."""
RECONNECT_WAIT = 0.5
"""Seconds between reconnect attempts while the server is away (nats-py retries forever)."""
INSUFFICIENT = 10047
"""JetStream error code: insufficient storage resources."""
FULL = frozenset({10077, INSUFFICIENT})
"""JetStream error codes of a write refused for lack of room (limits reached, no resources)."""
IN_USE = 10058
"""JetStream error code: a stream with this name exists with a different configuration."""


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Raise nats-py exceptions leaving the block as :mod:`broker.errors` ones (see module)."""
    try:
        yield
    except WeirError:
        raise
    except nats.errors.MaxPayloadError as exc:
        raise EventTooLarge(f"{what}: the message exceeds the NATS server's max_payload") from exc
    except nats.js.errors.APIError as exc:
        if exc.err_code in FULL:
            raise StoreFull(f"{what}: {exc.description}", retry_after=RETRY_AFTER) from exc
        raise StoreUnavailable(f"{what}: {exc}", retry_after=RETRY_AFTER) from exc
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}", retry_after=RETRY_AFTER) from exc


async def connect(
    servers: Sequence[str], *, timeout: float, reconnected: Callable[[], Awaitable[None]]
) -> Client:
    """A connection that reconnects forever in the background; ``StoreUnavailable`` if no
    server answers within ``timeout`` seconds. ``reconnected`` is awaited after a reconnect."""
    client = Client()

    async def on_error(exc: Exception) -> None:
        log.debug("nats: %s: %s", type(exc).__name__, exc)

    async def on_disconnect() -> None:
        if not client.is_closed:  # nats-py calls this on close() too
            log.warning("nats: disconnected from the store; reconnecting")

    async def on_reconnect() -> None:
        log.warning("nats: reconnected to %s", client.connected_url.netloc if client.connected_url else "?")
        await reconnected()

    try:
        with mapped(f"connecting to {', '.join(servers)}"):
            await asyncio.wait_for(
                client.connect(servers=list(servers), name="weir", connect_timeout=max(1, round(timeout)),
                               max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                               error_cb=on_error, disconnected_cb=on_disconnect,
                               reconnected_cb=on_reconnect),
                timeout,
            )
    except BaseException:
        await client.close()
        raise
    return client


def not_created(missing: Sequence[str]) -> StoreError:
    """The error for streams/buckets (``missing``, e.g. ``"stream WEIR_DEAD"``) that do not
    exist while the store may not create them: not retriable, since waiting will not help."""
    one = len(missing) == 1
    return StoreError(f"the NATS store needs {', '.join(missing)}, which {'does' if one else 'do'} not "
                      f"exist, and its URL says create=false: create {'it' if one else 'them'} "
                      "(docs/scaling.md lists the settings) or set create=true", retriable=False)


def described(config: api.StreamConfig) -> str:
    return f"stream {config.name} (subjects {', '.join(config.subjects or ())})"


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig, *, create: bool = True) -> None:
    """Create the stream unless it exists; an existing stream keeps its own configuration.

    A byte limit the server cannot reserve (beyond its JetStream storage) is dropped from the
    stream with a warning: the store still checks ``max_bytes`` before each append. With
    ``create`` false a missing stream raises :func:`not_created` instead.
    """
    if not create:
        try:
            await js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            raise not_created([described(config)]) from None
        return
    try:
        await js.add_stream(config)
    except nats.js.errors.APIError as exc:
        if exc.err_code == INSUFFICIENT and (config.max_bytes or -1) > 0:
            log.warning("nats: the server cannot reserve %d bytes for stream %s; creating it without "
                        "a byte limit", config.max_bytes, config.name)
            await ensure_stream(js, config.evolve(max_bytes=-1))
        elif exc.err_code == IN_USE:
            # Settings changed in the URL (retention, limits, replicas) apply to new streams only.
            log.warning("nats: stream %s exists with other settings than this store's; using it as it is",
                        config.name)
        else:
            raise


async def ensure_bucket(
    js: JetStreamContext, bucket: str, *, ttl: float | None, replicas: int, create: bool = True
) -> KeyValue:
    """The KV bucket, created (history 1, file storage) unless it exists or ``create`` is false
    (then ``BucketNotFoundError``)."""
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            raise
    try:
        return await js.create_key_value(bucket=bucket, history=1, ttl=ttl, replicas=replicas)
    except nats.js.errors.APIError as exc:
        if exc.err_code != IN_USE:
            raise
        return await js.key_value(bucket)


async def set_up(js: JetStreamContext, config: NatsConfig) -> tuple[KeyValue, KeyValue]:
    """The deliveries and dead-letter streams and the cursors and leases buckets, created unless
    they exist; with ``config.create`` false every missing one is named in one
    :func:`not_created` error. Returns the buckets (cursors, leases)."""
    names, create = config.names, config.create
    missing: list[str] = []
    for stream in (config.deliveries_stream(), config.dead_stream()):
        try:
            await ensure_stream(js, stream, create=create)
        except StoreError:
            missing.append(described(stream))
    buckets: list[KeyValue] = []
    for bucket, ttl in ((names.cursors_bucket, None), (names.leases_bucket, config.lease_ttl)):
        try:
            buckets.append(await ensure_bucket(js, bucket, ttl=ttl, replicas=config.replicas, create=create))
        except nats.js.errors.BucketNotFoundError:
            missing.append(f"KV bucket {bucket}" + (f" (TTL {ttl:g} s)" if ttl else ""))
    if missing:
        raise not_created(missing)
    return buckets[0], buckets[1]


async def api_request(nc: Client, subject: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One JetStream API request; API errors raise ``nats.js.errors.APIError``."""
    reply = await nc.request(f"{api.DEFAULT_PREFIX}.{subject}", json.dumps(request).encode(), timeout=timeout)
    response: dict[str, Any] = json.loads(reply.data)
    if "error" in response:
        raise nats.js.errors.APIError.from_error(response["error"])
    return response


async def stream_names(nc: Client, subjects: str, timeout: float) -> list[str]:
    """Names of the streams whose subjects overlap ``subjects``."""
    names: list[str] = []
    while True:
        page = await api_request(nc, "STREAM.NAMES", {"subject": subjects, "offset": len(names)}, timeout)
        found = page.get("streams") or []
        names += found
        if not found or len(names) >= page.get("total", 0):
            return names
