"""Baseline B3 on Kafka: the least a durable relay on Kafka must do.

``python -m bench.suite.relay_kafka --port P --sink URL --server HOST:PORT --name NAME
[--fanout N] [--ingress-only]``

Ingress awaits aiokafka's ``send_and_wait`` with ``acks=all`` (the broker stored the record in the
topic ``NAME``, one partition, created at startup) and then answers ``202``. The consumer is a
member of the group ``NAME``: ``getmany`` up to 256 records, POST them all at once (see
:mod:`bench.suite.relay_shared`), then commit, then the next batch.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.suite.relay_shared import WINDOW, Headers, SharedRelay, main

POLL_MS = 1000
FETCH_WAIT_MS = 5
"""How long the broker may hold a fetch that finds nothing. tansu answers such a fetch only when
this much time has passed, whatever arrives meanwhile (aiokafka's default of 500 ms put about
130 ms into every delivery), so the relay asks often instead."""
SESSION_MS = 2000
"""Group session: tansu completes a join in about max(1 s, session / 2)."""


class KafkaRelay(SharedRelay):
    producer: AIOKafkaProducer

    async def connect(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.server)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.name, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.server, acks="all")
        await self.producer.start()

    async def append(self, headers: Headers, body: bytes) -> None:
        await self.producer.send_and_wait(self.name, body, headers=[(k, v.encode()) for k, v in headers])

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(
            self.name, bootstrap_servers=self.server, group_id=self.name, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=SESSION_MS // 3, fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=WINDOW)
                records = [record for batch in batches.values() for record in batch]
                if not records:
                    continue
                await asyncio.gather(*(
                    self.post({k: v.decode() for k, v in record.headers}, record.value) for record in records
                ))
                await consumer.commit()
        finally:
            await consumer.stop()

    async def close(self) -> None:
        await self.producer.stop()


if __name__ == "__main__":
    main(KafkaRelay, "Bare durable relay on Kafka (baseline B3).")
