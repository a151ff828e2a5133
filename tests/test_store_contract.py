"""Every event-store backend against the shared contract (``tests/store_contract.py``).

A new backend is one more entry in :data:`BACKENDS`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.store.base import EventStore
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore
from tests.store_contract import Backend, SharedStoreContract, StoreContract


def memory(place: Path, *, max_events: int | None = None, max_bytes: int | None = None) -> EventStore:
    return MemoryStore(max_events=max_events, max_bytes=max_bytes)


def sqlite(place: Path, *, max_events: int | None = None, max_bytes: int | None = None) -> EventStore:
    return SqliteStore(path=place / "weir.db", max_events=max_events, max_bytes=max_bytes)


BACKENDS: dict[str, Backend] = {
    "memory": Backend(make=memory, durable=False),
    "sqlite": Backend(make=sqlite, durable=True),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


class TestStoreContract(StoreContract, SharedStoreContract):
    pass
