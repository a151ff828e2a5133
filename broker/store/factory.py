"""Store URLs: which :class:`~broker.store.base.EventStore` backs the Brokers.

==============================  =====================================================
URL                             store
==============================  =====================================================
``""`` (default)                :class:`~broker.store.sqlite.SqliteStore` at ``<data_dir>/weir.db``
``sqlite:///abs/path/weir.db``  :class:`~broker.store.sqlite.SqliteStore`, absolute path
``sqlite://relative/weir.db``   :class:`~broker.store.sqlite.SqliteStore`, relative to the working directory
``memory://``                   :class:`~broker.store.memory.MemoryStore` (not durable: tests only)
``nats://HOST:PORT[,...]``      :class:`~broker.store.nats.NatsStore` on NATS JetStream (shared)
``kafka://HOST:PORT[,...]``     :class:`~broker.store.kafka.KafkaStore` on Kafka (shared)
==============================  =====================================================

The shared stores' query parameters (stream/topic prefix, replication, claim lease...) are
documented in their modules. They are imported only when named, so a laptop run never loads
the NATS or Kafka client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from broker.store.base import EventStore
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore

SUPPORTED = ("memory://, sqlite:///<absolute path>, sqlite://<relative path>, nats://host:port, "
             "kafka://host:port, or empty for <data_dir>/weir.db")
SHARED_SCHEMES = frozenset({"nats", "kafka"})
"""Schemes of stores that several Weir processes can share (``--role`` other than ``all``)."""
ANNOUNCING_SCHEMES = frozenset({"kafka"})
"""Shared stores whose ``watch`` hears of every delivery that becomes claimable on the handle,
once a subscription has claimed there: a handle's fetch loop reads every partition it owns,
including those it takes over from a dead handle, and tells of what it fetched."""
DEFAULT_FILE = "weir.db"


def open_store(
    url: str | None,
    *,
    data_dir: str,
    max_events: int | None = None,
    max_bytes: int | None = None,
    synchronous: Literal["full", "normal"] = "full",
) -> EventStore:
    """The store ``url`` names, not opened yet (call ``await store.open()``).

    ``synchronous`` applies to SQLite only (see :mod:`broker.store.sqlite`). The default store's
    directory is created when the store opens. Raises ``ValueError`` for any other URL.
    """
    if not url:
        return SqliteStore(path=Path(data_dir) / DEFAULT_FILE, max_events=max_events, max_bytes=max_bytes,
                           synchronous=synchronous)
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "memory" and rest in ("", "/"):
        return MemoryStore(max_events=max_events, max_bytes=max_bytes)
    if sep and scheme == "sqlite" and rest not in ("", "/"):
        return SqliteStore(path=Path(rest), max_events=max_events, max_bytes=max_bytes,
                           synchronous=synchronous)
    if sep and scheme == "nats" and rest:
        from broker.store.nats import nats_store_from_url

        return nats_store_from_url(url, max_events=max_events, max_bytes=max_bytes)
    if sep and scheme == "kafka" and rest:
        from broker.store.kafka import kafka_store_from_url

        return kafka_store_from_url(url, max_events=max_events, max_bytes=max_bytes)
    raise ValueError(f"unsupported store URL {url!r}: use {SUPPORTED}")


def is_shared(url: str | None) -> bool:
    """Whether ``url`` names a store several Weir processes can use at once."""
    return _scheme(url) in SHARED_SCHEMES


def needs_polling(url: str | None) -> bool:
    """Whether hibernating workers on the store ``url`` names must be polled: it is shared and
    its ``watch`` does not tell of every delivery that becomes claimable here (on NATS it
    hears of routes through notices, not of a dead handle's claims expiring back)."""
    return is_shared(url) and _scheme(url) not in ANNOUNCING_SCHEMES


def _scheme(url: str | None) -> str:
    return str(url).partition("://")[0] if url else ""
