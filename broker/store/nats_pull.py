"""Pull requests to JetStream consumers, and a flush that survives its own timeout.

A pull is one request to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` answered on an inbox
of its own. The server counts the messages it sends as delivered to this connection, so one
that arrives after its pull gave up must not be dropped: an explicit-ack consumer would hand it
to nobody else until its ``ack_wait`` (the claim lease) ran out. A pull that ends before the
server's end-of-pull status (it timed out, with or without some messages) therefore keeps its
inbox for :data:`LATE_GRACE` seconds and naks whatever still comes (claimable again at once; the
server ignores a nak to a consumer without acks). That happened under load: with a thousand
workers claiming, answers waited in the socket longer than a pull waits for them, and every
such answer stranded its deliveries for the whole lease.

:func:`flush` replaces ``Client.flush``: nats-py (2.16) cancels the PONG's future when a flush
times out, and when that PONG arrives later its read loop raises ``InvalidStateError`` and stops
reading for good. The connection then looks alive and answers nothing until its ping interval
finds it stale (minutes). That happened under the same load, when a thousand workers acked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from broker.slots import Slots

log = logging.getLogger(__name__)

END_OF_PULL = frozenset({"404", "408", "409"})
"""Statuses ending a pull request: no messages, request expired, consumer limits or gone."""
PULLS_AT_ONCE = 32
"""Pull requests of one connection open at once; more wait their turn before being sent. With
1,000 Triggers every worker pulled at once: the answers queued behind one another on the loop,
thousands of pulls gave up after their 0.5 s, and their messages were nak'ed and fetched again.
S3 with 1,000 Triggers saturated (hand runs, deliveries/s against B3's in the same run, and
pulls that timed out): ungated 0.33x and 0.28x (7,364 and 7,340 timed out); 256 at once 0.52x
(4,376); 64 at once 0.50x and 0.53x (928, 810); 32 at once 0.66x (108); 16 at once 0.57x and
0.58x (33, 73). A gate held by a consumer that has reached ``max_ack_pending`` waits up to the
fetch's ``expires`` (20 ms), so it is kept well above one."""
LATE_GRACE = 5.0
"""Seconds a pull that timed out keeps its inbox to nak answers that come after it."""


class Pulls:
    """The pull requests of one connection; see the module docstring."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._draining: set[asyncio.Task[None]] = set()
        self._gate = Slots(PULLS_AT_ONCE)

    async def pull(
        self, stream: str, consumer: str, batch: int, *, timeout: float, expires: float | None = None,
        max_bytes: int | None = None,
    ) -> list[Msg]:
        """Up to ``batch`` messages (and ``max_bytes``, which must exceed the server's
        ``max_payload``) available now from a pull consumer (one request, no polling).

        Messages received before a timeout are returned, never dropped; later ones are nak'ed.
        ``expires`` (seconds) bounds how long the server keeps the request open: needed when the
        consumer's ``max_ack_pending`` may be reached, since the server then holds a ``no_wait``
        request instead of answering. A missing consumer never answers:
        ``nats.errors.TimeoutError`` after ``timeout`` (+ ``expires``) seconds, as for a server
        that does not respond. A status other than the end of the pull raises
        ``nats.js.errors.APIError``.
        """
        async with self._gate:
            return await self._pull(stream, consumer, batch, timeout=timeout, expires=expires,
                                    max_bytes=max_bytes)

    async def _pull(
        self, stream: str, consumer: str, batch: int, *, timeout: float, expires: float | None,
        max_bytes: int | None,
    ) -> list[Msg]:
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        ended = False
        try:
            request: dict[str, Any] = {"batch": batch, "no_wait": True}
            if expires is not None:
                request["expires"] = int(expires * 1e9)
            if max_bytes is not None:
                request["max_bytes"] = max_bytes
            await self._nc.publish(f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                                   json.dumps(request).encode(), reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout + (expires or 0.0)
            out: list[Msg] = []
            while len(out) < batch:
                try:
                    msg = await sub.next_msg(timeout=max(deadline - loop.time(), 0.001))
                except nats.errors.TimeoutError:
                    if out:
                        # Some messages came but no end-of-pull status: they are ours now.
                        return out
                    raise
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is None:
                    out.append(msg)
                elif status in END_OF_PULL:
                    break
                elif status != "100":  # 100: an idle heartbeat
                    raise nats.js.errors.APIError(code=int(status), description=headers.get("Description"))
            ended = True
            return out
        finally:
            if ended or not self._nc.is_connected:
                with suppress(nats.errors.Error):
                    await sub.unsubscribe()
            else:
                task = asyncio.create_task(self._drain(sub))
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)

    async def close(self) -> None:
        """Stop waiting for late answers (the connection is closing)."""
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)

    async def _drain(self, sub: Subscription) -> None:
        """Nak what still comes to an abandoned pull's inbox, until it ends or the grace is over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LATE_GRACE
        try:
            while (left := deadline - loop.time()) > 0:
                msg = await sub.next_msg(timeout=left)
                status = (msg.headers or {}).get("Status")
                if status in END_OF_PULL:
                    return
                if msg.reply and status is None:
                    log.debug("nats: nak of a message that came after its pull ended (%s)", msg.reply)
                    await msg.nak()
        except nats.errors.Error:  # the grace ran out, or the connection went
            pass
        finally:
            with suppress(nats.errors.Error):
                await sub.unsubscribe()


async def flush(nc: Client, timeout: float) -> None:
    """Return once the server has read everything written so far (a PING answered by its
    PONG); ``nats.errors.FlushTimeoutError`` after ``timeout`` seconds, leaving the PONG's future
    to be resolved whenever it comes (see the module docstring)."""
    if not nc.is_connected:
        raise nats.errors.ConnectionClosedError if nc.is_closed else nats.errors.ConnectionReconnectingError
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    await nc._send_ping(future)
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise nats.errors.FlushTimeoutError from None
