"""Store URLs: which :class:`~broker.store.base.EventStore` backs the Brokers.

==============================  =====================================================
URL                             store
==============================  =====================================================
``""`` (default)                :class:`~broker.store.sqlite.SqliteStore` at ``<data_dir>/weir.db``
``sqlite:///abs/path/weir.db``  :class:`~broker.store.sqlite.SqliteStore`, absolute path
``sqlite://relative/weir.db``   :class:`~broker.store.sqlite.SqliteStore`, relative to the working directory
``memory://``                   :class:`~broker.store.memory.MemoryStore` (not durable: tests only)
==============================  =====================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from broker.store.base import EventStore
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore

SUPPORTED = "memory://, sqlite:///<absolute path>, sqlite://<relative path>, or empty for <data_dir>/weir.db"
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
    raise ValueError(f"unsupported store URL {url!r}: use {SUPPORTED}")
