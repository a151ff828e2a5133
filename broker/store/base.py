"""The event-store seam: a durable log per Broker plus a durable queue of pending deliveries.

Model
-----
* A **log** (one per Broker, named ``"<namespace>/<broker>"``) holds accepted events, each with a
  sequence number ``seq`` that increases by at least 1 per append, starting at 1 (backends may
  leave gaps).
* The **router** (one per log at a time, in a dispatcher) reads the log after its **cursor**,
  decides which subscriptions (Triggers, named ``"<namespace>/<trigger>"``) an event goes to, and
  calls :meth:`EventStore.route` which records a **pending delivery** per ``(seq, subscription)``
  pair and moves the cursor. Events no subscription wants cost nothing more than the routing
  decision. With several dispatcher processes on a shared backend, :meth:`EventStore.lease` says
  which one routes a log.
* **Workers** (one per subscription per dispatcher process) :meth:`~EventStore.claim` pending
  deliveries, deliver them, and record the final outcome with :meth:`~EventStore.finish`
  (delivered, or given up after a dead-letter sink accepted it) or
  :meth:`~EventStore.dead_letter` (kept in the store's dead-letter record), or hand them back
  with :meth:`~EventStore.release`.
* An event is pruned once the cursor is past it and no pending delivery refers to it.

Claims
------
A delivery returned by :meth:`~EventStore.claim` is held by that store handle: no handle (this
one included) is given it again until the holder finishes, dead-letters or releases it, or
closes. On a shared backend a claim whose holder died (stopped renewing it) ends after the
backend's claim lease, so another process delivers it: at-least-once, never lost.

Guarantees every backend must give (the contract suite in ``tests/store_contract.py`` checks them):
* :meth:`append` returns only after the events are durable (for ``memory://``: in memory) and
  are all-or-nothing; on failure it raises :class:`~broker.errors.StoreError` and nothing is kept.
* :meth:`route` is idempotent for pairs already recorded, and a reader never sees the cursor
  past a delivery that is not recorded.
* Pending deliveries survive :meth:`close` and re-open (durable backends), so a restart resumes
  every accepted but unfinished delivery (at-least-once).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
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
    """Pending deliveries; a backend that stores several in one message may count the messages
    (at least one per subscription with deliveries pending, 0 only when none is), and says so."""
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

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        """Record pending ``(seq, subscription)`` deliveries, then set the cursor to ``upto``.

        ``ordered`` names the subscriptions among them that deliver in order: a shared backend
        keeps their deliveries without a ``partitionkey`` together (one ordering key), and may
        spread the unkeyed deliveries of the others across processes.

        Single-process backends do both in one transaction. Shared backends may crash between
        the two; the next router then routes the same entries again, which must not create a
        second pending delivery of a pair already recorded (within the backend's dedup window).
        """

    async def claim(self, subscription: str, limit: int, *, ordered: bool = False) -> Sequence[Delivery]:
        """Claim up to ``limit`` pending deliveries of ``subscription`` that nobody holds.

        Oldest first as far as the backend can tell (ascending ``seq`` on single-process
        backends). ``ordered`` says the subscription delivers in order: a shared backend then
        hands out a delivery only when no earlier one of the subscription is held elsewhere.
        An empty result means nothing is claimable now.
        """

    async def release(self, subscription: str, seqs: Sequence[int]) -> None:
        """Hand claimed deliveries back unfinished; they become claimable again at once."""

    async def finish(self, subscription: str, seqs: Sequence[int]) -> None:
        """Record a final outcome for these claimed deliveries; they are never claimed again."""

    async def dead_letter(self, record: DeadLetter) -> None:
        """Keep ``record`` in the dead-letter record and finish its delivery, atomically.

        ``seq`` 0 records an event that never had a delivery (a source's event its sink refused).
        """

    async def dead_letters(self, log: str) -> Sequence[DeadLetter]:
        """The dead-letter record of ``log``, oldest first."""

    async def forget(self, subscription: str) -> None:
        """Drop every pending delivery of a subscription that no longer exists."""

    async def lease(self, log: str) -> bool:
        """Whether this handle should route ``log`` now; called before every routing step.

        Single-process backends always answer ``True``. Shared backends grant the lease to one
        live handle per log at a time and move it when that handle stops or dies.
        """

    def watch(self, notify: Callable[[Collection[str]], None]) -> None:
        """Call ``notify`` with subscription names that got pending deliveries routed by another
        process (shared backends); a hint to claim now instead of at the next poll.
        Single-process backends never call it."""

    async def stats(self) -> StoreStats:
        """Current usage."""
