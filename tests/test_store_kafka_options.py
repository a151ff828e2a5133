"""The Kafka store's ``retention``, ``dead_retention`` and ``create`` options.

Parsing is checked on its own; the rest runs against the session's tansu broker (or
``KAFKA_BOOTSTRAP_SERVERS``), each test under its own topic prefix. Topic settings are read
back with DescribeConfigs, which tansu answers with the configs a topic was created with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from broker.errors import StoreError
from broker.store.base import DeadLetter
from broker.store.kafka import KafkaStore, kafka_store_from_url
from broker.store.kafka_config import Names, kafka_config_from_url
from tests.store_contract import LOG, event, prefix_for

SUBSCRIPTION = "ns/t"
OTHER_LOG = "ns/other"


def prefix_of(place: Path) -> str:
    return prefix_for(place, "o")



def store(bootstrap: str, place: Path, query: str = "") -> KafkaStore:
    return kafka_store_from_url(f"kafka://{bootstrap}?prefix={prefix_of(place)}&lease_ttl=1&claim_lease=1{query}")


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[Any]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def settings(admin: Any, topic: str) -> dict[str, str]:
    """The configs ``topic`` was given (DescribeConfigs)."""
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [resource] = response.resources
    assert resource[0] == 0, resource
    return {entry[0]: entry[1] for entry in resource[4]}


async def topics(admin: Any, prefix: str) -> set[str]:
    # No topic list: a metadata request for every topic creates none.
    return {t["topic"] for t in await admin.describe_topics() if t["topic"].startswith(prefix)}


def dead_letter(seq: int) -> DeadLetter:
    return DeadLetter(log=LOG, subscription=SUBSCRIPTION, seq=seq, event=event(seq), reason="expired",
                      attempts=1, status=None, dead_at=0.0)


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"retention": None, "dead_retention": None, "create": True, "commit_interval": 0.1}),
        ("commit_interval=0", {"commit_interval": 0.0}),
        ("commit_interval=2.5", {"commit_interval": 2.5}),
        ("retention=3600", {"retention": 3600.0, "dead_retention": None}),
        ("retention=0.5&dead_retention=604800", {"retention": 0.5, "dead_retention": 604800.0}),
        ("create=false", {"create": False}),
        ("create=False", {"create": False}),
        ("create=true&partitions=2&replicas=3", {"create": True, "partitions": 2, "replicas": 3}),
    ],
)
def test_url_options(query: str, expected: dict[str, object]) -> None:
    config = kafka_config_from_url(f"kafka://h:1?{query}")
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("retention=-1", "retention"),
        ("retention=0", "retention"),
        ("retention=soon", "retention"),
        ("retention=inf", "retention"),
        ("retention=nan", "retention"),
        ("dead_retention=-5", "dead_retention"),
        ("dead_retention=", "dead_retention"),
        ("commit_interval=-0.1", "commit_interval"),
        ("commit_interval=inf", "commit_interval"),
        ("commit_interval=nan", "commit_interval"),
        ("create=maybe", "create"),
        ("create=0", "create"),
        ("create=", "create"),
    ],
)
def test_invalid_values_name_the_option(query: str, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        kafka_config_from_url(f"kafka://h:1?{query}")


# --- retention --------------------------------------------------------------------------------


async def test_created_topics_carry_the_retention(kafka_bootstrap: str, tmp_path: Path, admin: Any) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(kafka_bootstrap, tmp_path, "&retention=3600&dead_retention=86400.5")
    await s.open()
    try:
        await s.append(LOG, [event(1)])
        [entry] = await s.read(LOG, 0, 10)
        await s.route(LOG, entry.seq, [(entry.seq, SUBSCRIPTION)])
        await s.dead_letter(dead_letter(entry.seq))
    finally:
        await s.close()
    assert (await settings(admin, names.log(LOG))).get("retention.ms") == "3600000"
    assert (await settings(admin, names.delivery(SUBSCRIPTION))).get("retention.ms") == "3600000"
    assert (await settings(admin, names.dead)).get("retention.ms") == "86400500"


async def test_without_retention_topics_get_the_clusters_default(
    kafka_bootstrap: str, tmp_path: Path, admin: Any
) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(kafka_bootstrap, tmp_path)
    await s.open()
    try:
        await s.append(LOG, [event(1)])
        await s.dead_letter(dead_letter(1))
    finally:
        await s.close()
    assert "retention.ms" not in await settings(admin, names.log(LOG))
    assert "retention.ms" not in await settings(admin, names.dead)


# --- create=false ------------------------------------------------------------------------------


async def test_create_false_fails_on_open_without_the_dead_letter_topic(
    kafka_bootstrap: str, tmp_path: Path, admin: Any
) -> None:
    names = Names(prefix_of(tmp_path))
    s = store(kafka_bootstrap, tmp_path, "&create=false")
    with pytest.raises(StoreError) as info:
        await s.open()
    assert not info.value.retriable
    assert names.dead in str(info.value) and "create=true" in str(info.value)
    assert await topics(admin, prefix_of(tmp_path)) == set()  # asking created nothing
    await s.close()


async def test_create_false_uses_topics_that_exist_and_names_missing_ones(
    kafka_bootstrap: str, tmp_path: Path, admin: Any
) -> None:
    names = Names(prefix_of(tmp_path))
    creator = store(kafka_bootstrap, tmp_path)
    await creator.open()
    try:
        await creator.append(LOG, [event(1)])
        await creator.dead_letter(dead_letter(1))
    finally:
        await creator.close()
    created = await topics(admin, prefix_of(tmp_path))
    assert created == {names.log(LOG), names.dead}
    s = store(kafka_bootstrap, tmp_path, "&create=false")
    await s.open()
    try:
        await s.append(LOG, [event(2)])
        entries = await s.read(LOG, 0, 10)
        assert [e.event.id for e in entries] == ["e1", "e2"]
        with pytest.raises(StoreError) as info:
            await s.append(OTHER_LOG, [event(3)])
        assert not info.value.retriable
        assert names.log(OTHER_LOG) in str(info.value) and "create=true" in str(info.value)
        with pytest.raises(StoreError) as info:
            await s.route(LOG, entries[-1].seq, [(entries[-1].seq, SUBSCRIPTION)])
        assert names.delivery(SUBSCRIPTION) in str(info.value) and "4 partitions" in str(info.value)
        assert await s.cursor(LOG) == 0  # the failed route moved nothing
        assert await topics(admin, prefix_of(tmp_path)) == created
    finally:
        await s.close()
