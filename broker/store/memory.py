"""``memory://``: an :class:`~broker.store.base.EventStore` held in process memory.

For tests and experiments only: nothing survives the process, so an accepted event is lost on
exit or crash. Semantics otherwise match the durable stores (the contract suite checks both):

* ``seq`` starts at 1 per log and grows by exactly 1 per appended event.
* :meth:`MemoryStore.route` ignores pairs at or below the current cursor (they were routed
  before, so replaying a route is harmless), rejects pairs above ``upto`` and an ``upto`` past
  the end of the log (``ValueError``), and never moves the cursor backwards. A subscription
  takes its deliveries from one log.
* An event is pruned as soon as the cursor is past it and no pending delivery refers to it.
* Limits count stored events (not yet routed, or routed with a pending delivery). The size of
  an event is ``len(data)`` plus the length of its attribute dict encoded as JSON by orjson
  (types preserved). An append that would exceed ``max_events`` or ``max_bytes`` raises
  :class:`~broker.errors.StoreFull` (``retry_after=1.0``) and stores nothing.
* Claims are held in memory (:mod:`broker.store.claims`) and end at close; the lease of every
  log is always this handle's.
* :meth:`MemoryStore.close` wakes every :meth:`MemoryStore.wait` at once. The contents outlive
  ``close``: opening the same instance again carries on where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from broker.errors import InvalidEvent, StoreFull
from broker.event import Event
from broker.store.base import DeadLetter, Delivery, LogEntry, StoreStats
from broker.store.claims import Claims
from broker.store.signal import LogSignal

FULL_RETRY_AFTER = 1.0


def encode_attributes(event: Event) -> bytes:
    """The attribute dict as JSON (orjson), value types preserved. Raises InvalidEvent for an
    integer beyond 64 bits, which no backend can keep faithfully."""
    try:
        return orjson.dumps(dict(event.attributes))
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(f"attribute values must be strings, booleans or 64-bit integers: {exc}") from None


def stored_size(event: Event) -> int:
    """Bytes an event counts against ``max_bytes``: data plus its attributes as orjson JSON."""
    return len(encode_attributes(event)) + (len(event.data) if event.data is not None else 0)


@dataclass(slots=True)
class _Entry:
    event: Event
    size: int
    refs: int = 0
    """Pending deliveries referring to this event."""


@dataclass(slots=True)
class _Log:
    entries: dict[int, _Entry] = field(default_factory=dict)
    """Stored events by seq, in ascending order (insertion order)."""
    last_seq: int = 0
    cursor: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


class MemoryStore:
    """Non-durable event store for tests and experiments; see the module docstring."""

    def __init__(self, *, max_events: int | None = None, max_bytes: int | None = None) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._logs: dict[str, _Log] = {}
        # subscription -> {seq: log}; ascending because route only adds seqs above the cursor.
        self._pending: dict[str, dict[int, str]] = {}
        self._events = 0
        self._bytes = 0
        self._pending_count = 0
        self._dead_count = 0
        self._signal = LogSignal()
        self._claims = Claims()
        self._closed = False

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._claims.clear()
        self._signal.notify_all()

    async def append(self, log: str, events: Sequence[Event]) -> None:
        if not events:
            return
        sizes = [stored_size(e) for e in events]
        added = sum(sizes)
        if self._max_events is not None and self._events + len(events) > self._max_events:
            raise StoreFull(f"store holds {self._events} of at most {self._max_events} events",
                            retry_after=FULL_RETRY_AFTER)
        if self._max_bytes is not None and self._bytes + added > self._max_bytes:
            raise StoreFull(f"store holds {self._bytes} of at most {self._max_bytes} bytes",
                            retry_after=FULL_RETRY_AFTER)
        state = self._log(log)
        for event, size in zip(events, sizes, strict=True):
            state.last_seq += 1
            state.entries[state.last_seq] = _Entry(event, size)
        self._events += len(events)
        self._bytes += added
        self._signal.notify(log)

    async def wait(self, log: str, after: int, timeout: float) -> None:
        state = self._log(log)
        await self._signal.wait(log, lambda: self._closed or state.last_seq > after, timeout)

    async def read(self, log: str, after: int, limit: int) -> Sequence[LogEntry]:
        state = self._logs.get(log)
        if state is None or limit <= 0:
            return []
        if after >= state.cursor:
            # Nothing above the cursor is ever pruned: the seqs are contiguous there.
            stop = min(state.last_seq, after + limit)
            return [LogEntry(seq=s, event=state.entries[s].event) for s in range(after + 1, stop + 1)]
        out: list[LogEntry] = []
        for seq, entry in state.entries.items():
            if seq > after:
                out.append(LogEntry(seq=seq, event=entry.event))
                if len(out) == limit:
                    break
        return out

    async def head(self, log: str) -> int:
        state = self._logs.get(log)
        return 0 if state is None else state.last_seq

    async def cursor(self, log: str) -> int:
        state = self._logs.get(log)
        return 0 if state is None else state.cursor

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        state = self._log(log)
        check_route(log, state.last_seq, upto, deliveries)
        previous = state.cursor
        if upto <= previous:
            return
        for seq, subscription in sorted(deliveries):
            if seq <= previous:
                continue
            queue = self._pending.setdefault(subscription, {})
            if seq not in queue:
                queue[seq] = log
                state.entries[seq].refs += 1
                self._pending_count += 1
        state.cursor = upto
        self._prune(state, range(previous + 1, upto + 1))

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        queue = self._pending.get(subscription)
        if not queue or limit <= 0:
            return []
        after, count = self._claims.scan(subscription, limit)
        found: list[Delivery] = []
        for seq, log in queue.items():
            if seq > after:
                event = self._logs[log].entries[seq].event
                found.append(Delivery(log=log, subscription=subscription, seq=seq, event=event))
                if len(found) == count:
                    break
        return self._claims.take(subscription, found, limit)

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        self._claims.release(subscription, seqs)

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        self._claims.end(subscription, seqs)
        queue = self._pending.get(subscription)
        if not queue:
            return
        for seq in seqs:
            log = queue.pop(seq, None)
            if log is None:
                continue
            self._pending_count -= 1
            state = self._logs[log]
            state.entries[seq].refs -= 1
            self._prune(state, (seq,))
        if not queue:
            del self._pending[subscription]

    async def dead_letter(self, record: DeadLetter) -> None:
        self._log(record.log).dead.append(record)
        self._dead_count += 1
        await self.finish(record.subscription, [record.seq])

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        state = self._logs.get(log)
        return [] if state is None else list(state.dead)

    async def forget(self, subscription: str) -> None:
        queue = self._pending.get(subscription)
        if queue:
            await self.finish(subscription, list(queue))
        self._claims.drop(subscription)

    async def lease(self, log: str) -> bool:
        return True

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        """One process routes and claims: the router wakes its workers itself."""

    async def stats(self) -> StoreStats:
        return StoreStats(events=self._events, bytes=self._bytes, pending=self._pending_count,
                          dead_letters=self._dead_count)

    def _log(self, log: str) -> _Log:
        state = self._logs.get(log)
        if state is None:
            state = self._logs[log] = _Log()
        return state

    def _prune(self, state: _Log, seqs: Iterable[int]) -> None:
        for seq in seqs:
            entry = state.entries.get(seq)
            if entry is not None and entry.refs == 0 and seq <= state.cursor:
                del state.entries[seq]
                self._events -= 1
                self._bytes -= entry.size


def check_route(log: str, last_seq: int, upto: int, deliveries: Sequence[tuple[int, str]]) -> None:
    """Reject a route that could only come from a bug: ``ValueError``, nothing recorded."""
    if upto > last_seq:
        raise ValueError(f"cannot route {log} up to seq {upto}: the log ends at {last_seq}")
    for seq, _ in deliveries:
        if seq > upto:
            raise ValueError(f"delivery of seq {seq} lies beyond the routed range (upto={upto})")
