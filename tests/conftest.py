"""Fixtures shared across test modules: real servers started once per session."""

from tests.kafka_server import kafka_bootstrap

__all__ = ["kafka_bootstrap"]
