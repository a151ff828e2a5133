"""Fixtures shared across test modules: real servers started once per session, and an HTTP
sender per test (closed after it)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.delivery.http_sender import HttpSender
from broker.store.nats import NatsStore
from tests.kafka_server import kafka_bootstrap
from tests.nats_server import nats_url

__all__ = ["kafka_bootstrap", "nats_url", "sender"]


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    client = HttpSender()
    yield client
    await client.close()


@pytest.fixture
async def nats_pair(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[NatsStore, NatsStore]]:
    """Two open NATS store handles on one test-private prefix."""
    from tests.test_store_nats import make_store  # a test module: imported when needed

    a, b = make_store(nats_url, tmp_path), make_store(nats_url, tmp_path)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()
