"""Fixtures shared across test modules: real servers started once per session."""

from tests.kafka_server import kafka_bootstrap
from tests.nats_server import nats_url

__all__ = ["kafka_bootstrap", "nats_url"]
