"""The event-store seam: a durable log per Broker plus a durable queue of pending deliveries.

Model
-----
* A **log** (one per Broker, named ``"<namespace>/<broker>"``) holds accepted events, each with a
  sequence number ``seq`` that increases by at least 1 per append, starting at 1.
* The **router** (one per log, in the dispatcher) reads the log after its **cursor**, decides
  which subscriptions (Triggers, named ``"<namespace>/<trigger>"``) an event goes to, and calls
  :meth:`EventStore.route` which, in one atomic step, records a **pending delivery** per
  ``(seq, subscription)`` pair and moves the cursor. Events no subscription wants cost nothing
  more than the routing decision.
* **Workers** (one per subscription) read their pending deliveries with :meth:`pending`, deliver,
  and record the final outcome with :meth:`finish` (delivered, or given up after a dead-letter
  sink accepted it) or :meth:`dead_letter` (kept in the store's dead-letter record).
* An event is pruned once the cursor is past it and no pending delivery refers to it.

Guarantees every backend must give (the contract suite in ``tests/store_contract.py`` checks them):
* :meth:`append` returns only after the events are durable (for ``memory://``: in memory) and
  are all-or-nothing; on failure it raises :class:`~broker.errors.StoreError` and nothing is kept.
* :meth:`route` is atomic and idempotent for pairs already recorded.
* Pending deliveries survive :meth:`close` and re-open (durable backends), so a restart resumes
  every accepted but unfinished delivery (at-least-once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from broker.event import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """An event in a Broker's log with its sequence number."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A pending delivery of the event at ``seq`` in ``log`` to ``subscription``."""

    log: str
    subscription: str
    seq: int
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An event that could not be delivered and had no dead-letter sink that accepted it."""

    log: str
    subscription: str
    seq: int
    event: Event
    reason: str
    """Why delivery ended, e.g. ``"HTTP 400 from http://svc/"`` or ``"expired"``."""
    attempts: int
    """Delivery attempts made, dead-letter sink attempts included."""
    status: int | None
    """The last HTTP status received, ``None`` for a transport error."""
    dead_at: float
    """Unix time (seconds) the record was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Current usage, for metrics and the admin API."""

    events: int
    bytes: int
    pending: int
    dead_letters: int


class EventStore(Protocol):
    """Durable storage of Broker logs, pending deliveries and dead letters. See module docstring."""

    async def open(self) -> None:
        """Create or open the store; must be called before any other method."""

    async def close(self) -> None:
        """Flush everything written and release resources. Idempotent."""

    async def append(self, log: str, events: Sequence[Event]) -> None:
        """Durably add ``events`` to ``log``, all or none.

        Raises :class:`~broker.errors.StoreFull` when a capacity limit would be exceeded and
        :class:`~broker.errors.StoreUnavailable` when the write failed.
        """

    async def wait(self, log: str, after: int, timeout: float) -> None:
        """Return once ``log`` holds an entry with ``seq > after``, or after ``timeout`` seconds."""

    async def read(self, log: str, after: int, limit: int) -> Sequence[LogEntry]:
        """Up to ``limit`` entries of ``log`` with ``seq > after``, ascending."""

    async def head(self, log: str) -> int:
        """The ``seq`` of the newest durable entry of ``log`` (0 when it has none)."""

    async def cursor(self, log: str) -> int:
        """The router's position in ``log``: the last routed ``seq`` (0 before any routing)."""

    async def route(self, log: str, upto: int, deliveries: Sequence[tuple[int, str]]) -> None:
        """Atomically record pending ``(seq, subscription)`` deliveries and set the cursor to ``upto``."""

    async def pending(self, subscription: str, after: int, limit: int) -> Sequence[Delivery]:
        """Up to ``limit`` pending deliveries of ``subscription`` with ``seq > after``, ascending."""

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        """Record a final outcome for these deliveries; they are never returned by :meth:`pending` again."""

    async def dead_letter(self, record: DeadLetter) -> None:
        """Keep ``record`` in the dead-letter record and finish its delivery, atomically.

        ``seq`` 0 records an event that never had a delivery (a source's event its sink refused).
        """

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        """The dead-letter record of ``log``, oldest first."""

    async def forget(self, subscription: str) -> None:
        """Drop every pending delivery of a subscription that no longer exists."""

    async def stats(self) -> StoreStats:
        """Current usage."""
