"""Reading the NATS store's logs: entries, heads, and waiting for new entries.

:class:`LogReader` reads a log stream through an ephemeral pull consumer (no acks, in memory,
positioned by start sequence). The consumer and the entries fetched beyond what a read
returned are kept while the next read continues where the previous one ended (the router's
pattern), so reading costs one pull request per batch of messages. A read elsewhere, a failed
pull or a reconnect start a new consumer at the right message.

:class:`Heads` knows the newest entry seq of each log: from this handle's appends and reads,
from the tiny notice every appender publishes on the log's head subject (core NATS), and from
stream info. :meth:`Heads.wait` subscribes to a log's notices on its first call for that log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from broker.event import Event
from broker.store.base import LogEntry
from broker.store.nats_codec import SCALE, decode_batch, entries, first_message_after, message_of
from broker.store.nats_io import mapped
from broker.store.nats_names import Names
from broker.store.nats_pull import Pulls
from broker.store.signal import LogSignal

STREAM_NOT_FOUND = 10059
NO_MESSAGE = 10037
READER_IDLE = 300.0
"""Seconds an unused read consumer lives at the server; reuse stops at half of it."""
PULL_BATCH = 256
"""Messages per pull request (each holds one append's events)."""


@dataclass(slots=True)
class _Reader:
    consumer: str
    position: int
    """The entry seq the next read continues after."""
    used: float
    buffer: deque[LogEntry] = field(default_factory=deque)


class LogReader:
    """Reads log entries by seq; see the module docstring."""

    def __init__(
        self, nc: Client, js: JetStreamContext, names: Names, *, pulls: Pulls, timeout: float
    ) -> None:
        self._pulls = pulls
        self._nc = nc
        self._js = js
        self._names = names
        self._timeout = timeout
        self._readers: dict[str, _Reader] = {}
        self._counts: dict[str, dict[int, int]] = {}
        """log -> stream seq -> events in that message, for messages read and not yet routed."""

    def reset(self) -> None:
        """Forget every read consumer (after a reconnect: the server may have lost them)."""
        self._readers.clear()

    async def read(self, log: str, after: int, limit: int) -> list[LogEntry]:
        if limit <= 0:
            return []
        now = asyncio.get_running_loop().time()
        reader = self._readers.pop(log, None)
        if reader is None or reader.position != after or now - reader.used > READER_IDLE / 2:
            if reader is not None:
                await self._delete(log, reader)
            reader = await self._open(log, after, now)
            if reader is None:
                return []
        out = self._take(reader, limit)
        stream = self._names.log_stream(log)
        with mapped(f"reading {log}"):
            while len(out) < limit:
                batch = min(limit - len(out), PULL_BATCH)
                msgs = await self._pulls.pull(stream, reader.consumer, batch, timeout=self._timeout)
                for msg in msgs:
                    for entry in self._entries(log, msg.metadata.sequence.stream, msg.data):
                        if entry.seq > after:
                            reader.buffer.append(entry)
                out += self._take(reader, limit - len(out))
                if len(msgs) < batch:
                    break
        # Only a read that completed keeps its reader: after a failed pull, messages the server
        # already sent may be lost, so the next read starts a new consumer.
        reader.used = now
        reader.position = out[-1].seq if out else after
        self._readers[log] = reader
        return out

    async def events(self, log: str, seqs: Sequence[int]) -> dict[int, Event]:
        """The events at ``seqs`` (one direct message get per message); ``ValueError`` for a
        seq no message holds."""
        wanted = set(seqs)
        found: dict[int, Event] = {}
        stream = self._names.log_stream(log)
        with mapped(f"reading {log}"):
            for mseq in sorted({message_of(s) for s in wanted}):
                try:
                    raw = await self._js.get_msg(stream, mseq)
                except nats.js.errors.APIError as exc:
                    if exc.err_code in (NO_MESSAGE, STREAM_NOT_FOUND):
                        raise ValueError(f"{log} holds no entry in message {mseq}") from None
                    raise
                for entry in self._entries(log, mseq, raw.data or b""):
                    if entry.seq in wanted:
                        found[entry.seq] = entry.event
        missing = wanted - found.keys()
        if missing:
            raise ValueError(f"{log} holds no entry with seq {min(missing)}")
        return found

    async def routed(self, log: str, upto: int) -> int:
        """How many entries of ``upto``'s message are at or below ``upto`` (0 at a message end).
        Known from reads; otherwise the message is read. Forgets the counts of older messages."""
        mseq = message_of(upto)
        counts = self._counts.setdefault(log, {})
        for older in [m for m in counts if m < mseq]:
            del counts[older]
        if upto % SCALE == 0:
            return 0
        if mseq not in counts:
            await self.events(log, [upto])
        return counts[mseq] - (mseq * SCALE - upto)

    async def close(self) -> None:
        readers, self._readers = self._readers, {}
        for log, reader in readers.items():
            await self._delete(log, reader)

    def _entries(self, log: str, mseq: int, payload: bytes) -> list[LogEntry]:
        found = entries(mseq, decode_batch(payload))
        counts = self._counts.setdefault(log, {})
        if len(counts) > 100_000:
            counts.clear()  # read but never routed (not this handle's log to route)
        counts[mseq] = len(found)
        return found

    @staticmethod
    def _take(reader: _Reader, count: int) -> list[LogEntry]:
        out: list[LogEntry] = []
        while reader.buffer and len(out) < count:
            out.append(reader.buffer.popleft())
        return out

    async def _open(self, log: str, after: int, now: float) -> _Reader | None:
        name = self._nc.new_inbox().rpartition(".")[2]
        config = api.ConsumerConfig(
            name=name, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first_message_after(after), ack_policy=api.AckPolicy.NONE,
            inactive_threshold=READER_IDLE, mem_storage=True, num_replicas=1,
        )
        with mapped(f"reading {log}"):
            try:
                await self._js.add_consumer(self._names.log_stream(log), config, timeout=self._timeout)
            except nats.js.errors.APIError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    return None
                raise
        return _Reader(consumer=name, position=after, used=now)

    async def _delete(self, log: str, reader: _Reader) -> None:
        # Best effort: the server drops an unused consumer after READER_IDLE anyway.
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
            await self._js.delete_consumer(self._names.log_stream(log), reader.consumer)


class Heads:
    """The newest entry seq of each log, and waiting for it to pass a seq; see the module docstring."""

    def __init__(self, nc: Client, js: JetStreamContext, names: Names, *, timeout: float) -> None:
        self._nc = nc
        self._js = js
        self._names = names
        self._timeout = timeout
        self._known: dict[str, int] = {}
        self._signal = LogSignal()
        self._subs: dict[str, Subscription] = {}
        self._closed = False

    def known(self, log: str) -> int:
        """The newest seq this handle has seen (it may lag behind other processes' appends)."""
        return self._known.get(log, 0)

    def seen(self, log: str, head: int) -> None:
        if head > self._known.get(log, 0):
            self._known[log] = head
            self._signal.notify(log)

    async def announce(self, log: str, head: int) -> None:
        """Record this handle's append and tell waiting handles elsewhere (best effort)."""
        self.seen(log, head)
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(self._names.head_subject(log), str(head).encode())

    async def head(self, log: str) -> int:
        """The newest seq of ``log`` according to the server (0 for a log never appended to)."""
        with mapped(f"reading the head of {log}"):
            try:
                info = await self._js.stream_info(self._names.log_stream(log))
            except nats.js.errors.APIError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    return 0
                raise
        self.seen(log, info.state.last_seq * SCALE)
        return self.known(log)

    async def wait(self, log: str, after: int, timeout: float) -> None:
        if self._closed or self.known(log) > after:
            return
        if log not in self._subs:
            with mapped(f"watching {log}"):
                self._subs[log] = await self._nc.subscribe(self._names.head_subject(log), cb=self._heard(log))
        if await self.head(log) > after:
            return
        await self._signal.wait(log, lambda: self._closed or self.known(log) > after, timeout)

    async def close(self) -> None:
        self._closed = True
        self._signal.notify_all()
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def _heard(self, log: str) -> Callable[[Msg], Awaitable[None]]:
        async def on_notice(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                self.seen(log, int(msg.data))

        return on_notice
