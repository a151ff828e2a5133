"""The NATS store's dead-letter record: one stream, a subject per log, JSON records.

A record with ``seq`` > 0 is published with ``Nats-Msg-Id: <log>:<seq>:<subscription>``, so
recording the same delivery's end twice (a retry after a lost ack, within the duplicate
window) keeps one record. Records of ``seq`` 0 (no delivery) are all kept. Reading uses an
ephemeral consumer filtered to the log's subject, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors
from nats.js import JetStreamContext, api
from nats.nuid import NUID

from broker.store.base import DeadLetter
from broker.store.dead_json import decode_dead_letter, encode_dead_letter
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls

PULL_BATCH = 256


class DeadLetters:
    """Writes and reads dead-letter records; see the module docstring."""

    def __init__(self, js: JetStreamContext, names: Names, *, pulls: Pulls, timeout: float) -> None:
        self._pulls = pulls
        self._js = js
        self._names = names
        self._timeout = timeout

    async def record(self, record: DeadLetter) -> None:
        """Store ``record``; returns once the server acknowledged it."""
        msg_id = f"{record.log}:{record.seq}:{record.subscription}"
        headers = {"Nats-Msg-Id": msg_id} if record.seq > 0 else None
        with mapped(f"recording a dead letter of {record.log}"):
            await self._js.publish(self._names.dead_subject(record.log), encode_dead_letter(record),
                                   headers=headers)

    async def read(self, log: str) -> list[DeadLetter]:
        stream, name = self._names.dead_stream, NUID().next().decode()
        config = api.ConsumerConfig(
            name=name, filter_subject=self._names.dead_subject(log), ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=60.0, mem_storage=True)
        out: list[DeadLetter] = []
        with mapped(f"reading the dead letters of {log}"):
            await self._js.add_consumer(stream, config)
            try:
                while True:
                    msgs = await self._pulls.pull(stream, name, PULL_BATCH, timeout=self._timeout)
                    out += [decode_dead_letter(m.data) for m in msgs]
                    if len(msgs) < PULL_BATCH:
                        return out
            finally:
                with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                    await self._js.delete_consumer(stream, name)
