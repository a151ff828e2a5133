"""Configuration of the NATS store and the ``nats://`` URL that carries it.

The URL's parameters are described in :mod:`broker.store.nats`; the stream configurations
here are what the first process to need a stream creates it with (with ``create=false``, what
an operator must create beforehand).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from nats.js import api

from broker.store.nats_names import Names


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsConfig:
    """Where the store lives and how it behaves; see the module docstring for each field."""

    servers: tuple[str, ...]
    prefix: str = "weir"
    replicas: int = 1
    claim_lease: float = 30.0
    lease_ttl: float = 10.0
    duplicate_window: float = 120.0
    timeout: float = 2.0
    retention: float | None = None
    """Seconds the server keeps a message of a log stream or of the deliveries stream, routed
    or delivered or not (the streams' ``max_age``); ``None``: until routed / delivered."""
    dead_retention: float | None = None
    """Seconds the server keeps a dead-letter record (``max_age``); ``None``: forever."""
    create: bool = True
    """Whether missing streams and KV buckets are created; ``False``: a missing one is a
    :class:`~broker.errors.StoreError` (not retriable) naming it."""
    max_events: int | None = None
    """Log entries not yet routed the store may hold (also each stream's message limit)."""
    max_bytes: int | None = None
    """Bytes of log entries not yet routed, as NATS counts them (payload, subject, headers and
    a few dozen bytes of per-message overhead); also each stream's byte limit."""

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("the NATS store needs at least one server")
        Names(self.prefix)  # validates the prefix
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {self.replicas}")
        for name in ("claim_lease", "lease_ttl", "duplicate_window", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {getattr(self, name)}")
        for name in ("retention", "dead_retention"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        for name in ("max_events", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    def log_stream(self, log: str) -> api.StreamConfig:
        """A log's stream: file storage, the limits as its own (refusing new messages), messages
        older than ``retention`` dropped."""
        names = self.names
        return api.StreamConfig(
            name=names.log_stream(log), subjects=[names.log_subjects(log)], storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.NEW, max_msgs=self.max_events or -1, max_bytes=self.max_bytes or -1,
            max_age=self.retention or 0, num_replicas=self.replicas)

    def deliveries_stream(self) -> api.StreamConfig:
        """The pending deliveries: a work queue (an acked message is deleted), deduplicated;
        messages older than ``retention`` dropped, delivered or not."""
        names = self.names
        return api.StreamConfig(
            name=names.deliveries_stream, subjects=[names.deliveries_subjects],
            retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.NEW, max_msgs=self.max_events or -1, max_bytes=self.max_bytes or -1,
            max_age=self.retention or 0, duplicate_window=_window(self.duplicate_window, self.retention),
            num_replicas=self.replicas)

    def dead_stream(self) -> api.StreamConfig:
        """The dead-letter records, kept ``dead_retention`` seconds (0 in ``max_age``: forever)."""
        names = self.names
        return api.StreamConfig(
            name=names.dead_stream, subjects=[names.dead_subjects], storage=api.StorageType.FILE,
            max_age=self.dead_retention or 0,
            duplicate_window=_window(self.duplicate_window, self.dead_retention), num_replicas=self.replicas)


UNORDERED_MAX_ACK_PENDING = 20_000
"""Messages of one unordered subscription (or fan messages) held at once across all processes."""


def consumer_config(name: str, subject: str, *, lease: float, ordered: bool) -> api.ConsumerConfig:
    """A durable pull consumer of the deliveries stream handing out ``subject``'s messages,
    each held ``lease`` seconds unless acked or reported in progress; ``ordered``: one at a time."""
    return api.ConsumerConfig(
        name=name, durable_name=name, filter_subject=subject, deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT, ack_wait=lease, max_deliver=-1,
        max_ack_pending=1 if ordered else UNORDERED_MAX_ACK_PENDING,
    )


def _window(duplicate_window: float, max_age: float | None) -> float:
    # The server refuses a deduplication window longer than the stream's max_age; a message
    # older than max_age is gone anyway, so there is nothing left to be a duplicate of.
    return duplicate_window if max_age is None else min(duplicate_window, max_age)


def flag(text: str) -> bool:
    """``true`` or ``false`` (any case); ``ValueError`` for anything else."""
    value = {"true": True, "false": False}.get(text.lower())
    if value is None:
        raise ValueError(f"{text!r} is not true or false")
    return value


_PARAMS: dict[str, Callable[[str], Any]] = {
    "prefix": str, "replicas": int, "claim_lease": float, "lease_ttl": float,
    "duplicate_window": float, "timeout": float, "retention": float, "dead_retention": float,
    "create": flag,
}
assert set(_PARAMS) <= {f.name for f in fields(NatsConfig)}


def config_from_url(url: str, *, max_events: int | None = None, max_bytes: int | None = None) -> NatsConfig:
    """Parse a ``nats://`` store URL (see the module docstring); ``ValueError`` when invalid."""
    parts = urlsplit(url)
    if parts.scheme != "nats" or not parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"invalid NATS store URL {url!r}: use nats://HOST:PORT[,HOST:PORT][?param=value]")
    if "@" in parts.netloc:
        raise ValueError(f"invalid NATS store URL {url!r}: credentials in the URL are not supported")
    servers = tuple(f"nats://{host}" for host in parts.netloc.split(","))
    if any(server == "nats://" for server in servers):
        raise ValueError(f"invalid NATS store URL {url!r}: empty server address")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        if key not in _PARAMS:
            raise ValueError(f"unknown NATS store parameter {key!r} (known: {', '.join(sorted(_PARAMS))})")
        try:
            options[key] = _PARAMS[key](value)
        except ValueError:
            raise ValueError(f"invalid value {value!r} for NATS store parameter {key!r}") from None
    return NatsConfig(servers=servers, max_events=max_events, max_bytes=max_bytes, **options)
