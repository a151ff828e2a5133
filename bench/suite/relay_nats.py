"""Baseline B3 on NATS JetStream: the least a durable relay on JetStream must do.

``python -m bench.suite.relay_nats --port P --sink URL --server HOST:PORT --name NAME
[--fanout N] [--ingress-only]``

Ingress awaits ``js.publish`` (the PubAck: stored in the stream ``NAME``, file storage) and then
answers ``202``. The consumer is a durable pull consumer: ``fetch(256)``, each message POSTed to
the sink (up to 256 in flight, see :mod:`bench.suite.relay_shared`), then ``msg.ack()``.
"""

from __future__ import annotations

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from bench.suite.relay_shared import Headers, SharedRelay, main

FETCH = 256
FETCH_WAIT = 1.0
"""Seconds a fetch waits for messages when the stream has none."""


class NatsRelay(SharedRelay):
    nc: Client
    js: JetStreamContext

    @property
    def subject(self) -> str:
        return f"{self.name}.events"

    async def connect(self) -> None:
        self.nc = await nats.connect(f"nats://{self.server}")
        self.js = self.nc.jetstream()
        stream = api.StreamConfig(name=self.name, subjects=[self.subject], storage=api.StorageType.FILE)
        await self.js.add_stream(stream)

    async def append(self, headers: Headers, body: bytes) -> None:
        await self.js.publish(self.subject, body, headers=dict(headers))

    async def consume(self) -> None:
        sub = await self.js.pull_subscribe(self.subject, durable="relay", stream=self.name)
        while True:
            try:
                messages = await sub.fetch(FETCH, timeout=FETCH_WAIT)
            except TimeoutError:
                # nats-py raises its own TimeoutError, or asyncio's when the deadline ran out
                # before its second pull request (a busy loop: 1,000 POSTs per event); both
                # are the builtin's subclass or the builtin itself. Catching only nats-py's
                # ended this loop and the relay delivered nothing.
                continue
            for message in messages:
                await self.spawn(message.headers or {}, message.data, message.ack)

    async def close(self) -> None:
        await self.nc.close()


if __name__ == "__main__":
    main(NatsRelay, "Bare durable relay on NATS JetStream (baseline B3).")
