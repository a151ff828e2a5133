"""Settings of the Kafka store: the URL's query parameters, topic and group names, client options,
and the one place where aiokafka's errors become Weir's.

See :mod:`broker.store.kafka` for what the parameters mean to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from broker.errors import EventTooLarge, StoreUnavailable

log = logging.getLogger("broker.store.kafka")

RETRY_AFTER = 1.0
"""Seconds a client should wait after :class:`StoreUnavailable` (``Retry-After``)."""
MIN_SESSION = 1.0
"""Shortest group session (seconds) the store accepts."""
MAX_TOPIC = 249
"""Kafka's longest topic name."""
_PREFIX = re.compile(r"[A-Za-z0-9._-]+")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaStoreConfig:
    """One Kafka store handle's settings. Durations are seconds."""

    bootstrap: tuple[str, ...]
    """``host:port`` of one or more brokers."""
    prefix: str = "weir"
    """Start of every topic and consumer-group name, so several stores share one cluster."""
    partitions: int = 4
    """Partitions of each delivery topic (one per subscription): how many handles can claim a
    subscription's deliveries at once. Logs and the dead-letter topic have one partition."""
    replicas: int = 1
    """Replication factor of the topics the store creates (use 3 on a production cluster)."""
    lease_ttl: float = 6.0
    """Session timeout of the router group: a dead router's leases move after about this long.
    6 s is Apache Kafka's smallest allowed session (``group.min.session.timeout.ms``)."""
    claim_lease: float = 6.0
    """Session timeout of the dispatcher group: the claim lease of a dead handle."""
    timeout: float = 2.0
    """How long one Kafka call may take before it fails with StoreUnavailable."""
    buffer: int = 500
    """Deliveries fetched ahead per subscription; its partitions pause while this many wait."""
    retention: float | None = None
    """``retention.ms`` of the log and delivery topics the store creates: records older than
    this are deleted, consumed or not. ``None``: the cluster's default (Kafka's: 7 days)."""
    dead_retention: float | None = None
    """``retention.ms`` of the dead-letter topic when created; ``None``: the cluster's default."""
    commit_interval: float = 0.1
    """Seconds: how often at most finished deliveries and routed cursors are committed.
    :meth:`~broker.store.kafka.KafkaStore.finish` and ``route`` then return before the commit,
    and a crash within it delivers those deliveries (or routes those events) again; a clean
    close, a lost lease and a rebalance commit first. ``0``: each commits before it returns,
    one commit per call (each costs the cluster about what a produce does)."""
    create: bool = True
    """Whether missing topics are created; ``False``: a missing one is a
    :class:`~broker.errors.StoreError` (not retriable) naming it."""

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ValueError("the Kafka store needs at least one broker address")
        if not _PREFIX.fullmatch(self.prefix) or len(self.prefix) > 100:
            raise ValueError(f"invalid topic prefix {self.prefix!r}: letters, digits, '.', '_' and '-' only")
        for name in ("partitions", "replicas", "buffer", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Kafka store option {name} must be positive, not {getattr(self, name)}")
        for name in ("lease_ttl", "claim_lease"):
            if not getattr(self, name) >= MIN_SESSION:
                # Below it tansu completes a rebalance without the members already in the
                # group, which keep their partitions: two lease holders, two claimers.
                raise ValueError(f"Kafka store option {name} must be at least {MIN_SESSION} s, "
                                 f"not {getattr(self, name)}")
        if not (self.commit_interval >= 0 and math.isfinite(self.commit_interval)):
            raise ValueError(f"Kafka store option commit_interval must be 0 or more seconds, "
                             f"not {self.commit_interval}")
        for name in ("retention", "dead_retention"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Kafka store option {name} must be a positive number of seconds, "
                                 f"not {value}")


SECONDS = ("lease_ttl", "claim_lease", "timeout", "retention", "dead_retention", "commit_interval")
"""URL options that are durations in seconds."""


def kafka_config_from_url(url: str) -> KafkaStoreConfig:
    """Parse ``kafka://HOST:PORT[,HOST:PORT...][?name=value&...]``; ``ValueError`` when invalid."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"invalid Kafka store URL {url!r}: use kafka://host:port[,host:port][?options]")
    servers = tuple(s.strip() for s in parts.netloc.split(","))
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"invalid Kafka broker address {server!r} in {url!r}: use host:port")
    options: dict[str, Any] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            options[name] = text
        elif name in ("partitions", "replicas", "buffer"):
            options[name] = _number(name, text, int)
        elif name in SECONDS:
            options[name] = _number(name, text, float)
        elif name == "create":
            options[name] = _flag(name, text)
        else:
            raise ValueError(f"unknown Kafka store option {name!r} in {url!r}")
    return KafkaStoreConfig(bootstrap=servers, **options)


def _number(name: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"Kafka store option {name} must be a number, not {text!r}") from None


def _flag(name: str, text: str) -> bool:
    value = {"true": True, "false": False}.get(text.lower())
    if value is None:
        raise ValueError(f"Kafka store option {name} must be true or false, not {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Names:
    """Topic and group names under one prefix.

    A log ``ns/broker`` is the topic ``<prefix>.log.ns.broker``, a subscription ``ns/trigger``
    ``<prefix>.dl.ns.trigger``. Characters other than lowercase letters, digits and ``-`` are
    written ``_xx`` (hex of each UTF-8 byte), so different names never share a topic; a name
    too long for Kafka ends in a hash instead.
    """

    prefix: str

    def log(self, log: str) -> str:
        return self._topic("log", log)

    def delivery(self, subscription: str) -> str:
        return self._topic("dl", subscription)

    @property
    def logs(self) -> str:
        """What every log topic's name starts with."""
        return f"{self.prefix}.log."

    @property
    def fan(self) -> str:
        """The fan records' topic (:mod:`broker.store.fan`): no subscription's topic, since
        ``_fa`` would escape the byte 0xfa, which UTF-8 never holds."""
        return f"{self.prefix}.dl._fan"

    @property
    def deliveries(self) -> str:
        """What every delivery topic's name starts with."""
        return f"{self.prefix}.dl."

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def routers(self) -> str:
        return f"{self.prefix}-routers"

    @property
    def dispatchers(self) -> str:
        return f"{self.prefix}-dispatchers"

    def _topic(self, kind: str, name: str) -> str:
        return _topic(self.prefix, kind, name)


@functools.lru_cache(maxsize=16_384)
def _topic(prefix: str, kind: str, name: str) -> str:
    # Cached: every append and route names its topics, and escaping was 4% of ingress CPU.
    topic = f"{prefix}.{kind}." + ".".join(_escape(part) for part in name.split("/"))
    if len(topic) > MAX_TOPIC:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        topic = f"{topic[: MAX_TOPIC - 17]}.{digest}"
    return topic


def _escape(part: str) -> str:
    return "".join(c if c in _SAFE else "".join(f"_{b:02x}" for b in c.encode()) for c in part)


def client_options(config: KafkaStoreConfig) -> dict[str, Any]:
    """Options every aiokafka client of the store gets."""
    return {"bootstrap_servers": list(config.bootstrap), "retry_backoff_ms": 100, "client_id": "weir"}


FETCH_WAIT_MS = 10
"""Longest a fetch with nothing to return waits (ms). Apache Kafka answers a long-poll fetch as
soon as records arrive, but tansu holds an empty fetch for the whole wait: with aiokafka's
500 ms default every delivery waited up to half a second at each hop. 10 ms keeps the added
latency small at the cost of an idle fetch per consumer every 10 ms."""


def consumer_options(config: KafkaStoreConfig) -> dict[str, Any]:
    """Options every consumer of the store gets."""
    return {**client_options(config), "fetch_max_wait_ms": FETCH_WAIT_MS}


MEMBER_WAKE_MS = 5_000
"""How often a group member's fetch loop wakes when nothing else wakes it (ms)."""
MEMBER_POLL_MS = 1_000


def group_options(config: KafkaStoreConfig, *, session: float) -> dict[str, Any]:
    """Options of a consumer-group member with a ``session``-second session timeout."""
    session_ms = max(int(session * 1000), 3)
    return {
        **consumer_options(config),
        "enable_auto_commit": False,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(session_ms // 3, 1),
        # tansu takes about max(1 s, session / 2) to complete a join; Kafka waits for members
        # up to the rebalance timeout, which need not exceed the session here.
        "rebalance_timeout_ms": session_ms,
        # JoinGroup blocks for up to the rebalance timeout: the request must outlast it.
        "request_timeout_ms": max(40_000, 3 * session_ms),
        # Members never fetch (every partition stays paused; other consumers read). aiokafka's
        # fetch loop walks every assigned partition each time it wakes, by default every
        # 200 ms: thousands of partitions made that a tenth of a core with nothing to do.
        "consumer_timeout_ms": MEMBER_WAKE_MS,
    }


async def keep_polling(member: AIOKafkaConsumer, what: str) -> None:
    """Poll ``member`` (all its partitions paused) so Kafka's poll-interval check never expels
    it; it returns nothing."""
    while True:
        try:
            await member.getmany(timeout_ms=MEMBER_POLL_MS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: %s: %s", what, type(exc).__name__, exc)
            await asyncio.sleep(MEMBER_POLL_MS / 1000)


@contextlib.asynccontextmanager
async def kafka_errors(what: str, timeout: float) -> AsyncIterator[None]:
    """Bound a Kafka call to ``timeout`` seconds and map its errors at this boundary:
    too large a record -> :class:`EventTooLarge`; anything else (connection lost, timeout,
    not enough replicas...) -> :class:`StoreUnavailable` (retriable, ``retry_after`` 1 s)."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except MessageSizeTooLargeError as exc:
        raise EventTooLarge(f"{what}: the record is larger than Kafka accepts ({exc})") from None
    except (KafkaError, TimeoutError, OSError) as exc:
        detail = str(exc) or "timed out"
        raise StoreUnavailable(f"Kafka: {what} failed: {type(exc).__name__}: {detail}",
                               retry_after=RETRY_AFTER) from exc


async def stop_quietly(what: str, stop: Awaitable[None], timeout: float) -> None:
    """Await a client's ``stop()`` for at most ``timeout`` seconds, logging instead of raising:
    closing must finish even with Kafka gone (aiokafka's consumer then re-raises the
    cancellation of its own fetch task from ``stop()``)."""
    try:
        async with asyncio.timeout(timeout):
            await stop
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("closing %s: interrupted inside the Kafka client", what)
    except Exception as exc:
        log.warning("closing %s: %s: %s", what, type(exc).__name__, exc)
