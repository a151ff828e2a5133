"""Fixtures shared across test modules: real servers started once per session, and an HTTP
sender per test (closed after it)."""

from collections.abc import AsyncIterator

import pytest

from broker.delivery.http_sender import HttpSender
from tests.kafka_server import kafka_bootstrap
from tests.nats_server import nats_url

__all__ = ["kafka_bootstrap", "nats_url", "sender"]


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    client = HttpSender()
    yield client
    await client.close()
