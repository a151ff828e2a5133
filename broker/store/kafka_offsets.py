"""Offset bookkeeping of the delivery partitions a Kafka store handle owns (or owned, while it
still has claims or uncommitted work there), and committing it.

Offsets below ``base`` are finished, so ``base`` is what to commit. A record holds a bundle of
deliveries (:mod:`broker.store.bundle`); above ``base``, each of a record's deliveries is
buffered (fetched, claimable), held (claimed) or finished, and the record is done (finished out
of order) once all of its deliveries are. A fetch after a (re-)assignment starts again at the
committed offset; :meth:`PartitionState.arrive` and :meth:`PartitionState.fresh` tell which of
those records' deliveries still need handing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from broker.errors import StoreUnavailable
from broker.store.kafka_config import kafka_errors

log = logging.getLogger(__name__)

Key = tuple[str, int]
"""A delivery of a record: ``(subscription, seq)``."""


@dataclass(slots=True)
class PartitionState:
    subscription: str
    """Whose deliveries the partition holds; :data:`~broker.store.kafka_codec.FAN` for many."""
    base: int
    """Every offset below is finished: the offset to commit."""
    sent: int
    """The offset last committed (or found committed)."""
    upto: int | None
    """The next offset expected from the fetch; ``None`` until the first after an assignment."""
    done: set[int] = field(default_factory=set)
    """Records finished above ``base``."""
    held: Counter[int] = field(default_factory=Counter)
    """Deliveries claimed, per record."""
    buffered: Counter[int] = field(default_factory=Counter)
    """Deliveries fetched and waiting to be claimed, per record."""
    left: dict[int, int] = field(default_factory=dict)
    """Deliveries without a final outcome, per record seen and not finished."""
    gone: dict[int, set[Key]] = field(default_factory=dict)
    """Deliveries finished, per record partly finished: not handed out again when it is
    re-fetched."""
    assigned: bool = True

    @classmethod
    def starting_at(cls, subscription: str, offset: int) -> PartitionState:
        """A partition first fetched at ``offset``: the fetch starts at the committed offset,
        so nothing before it is pending."""
        return cls(subscription, base=offset, sent=offset, upto=offset)

    def arrive(self, offset: int) -> bool:
        """A record at ``offset`` was fetched: whether it may hold deliveries to hand out (it is
        not finished; which of its deliveries are new is :meth:`fresh`'s to say). Offsets
        skipped by the fetch have no record and count as finished."""
        if self.upto is None:
            # Re-assigned: the fetch restarts at the committed offset, which may lag ``base``
            # when a commit failed; commit again.
            self.sent = min(self.sent, offset)
            self.upto = offset
        if offset < self.upto:
            return False
        for missing in range(self.upto, offset):
            self.finish(missing)
        self.upto = offset + 1
        return not (offset < self.base or offset in self.done)

    def fresh(self, offset: int, keys: Iterable[Key]) -> set[Key]:
        """The record at ``offset`` holds deliveries ``keys``: those not finished yet."""
        found = set(keys)
        self.left.setdefault(offset, len(found))
        gone = self.gone.get(offset)
        return found if gone is None else found - gone

    def finish_one(self, offset: int, key: Key) -> None:
        """Delivery ``key`` of the record at ``offset`` is finished; the record is once all are."""
        left = self.left.get(offset, 1) - 1
        if left > 0:
            self.left[offset] = left
            self.gone.setdefault(offset, set()).add(key)
        else:
            self.finish(offset)

    def finish(self, offset: int) -> None:
        """The record at ``offset`` is finished."""
        self.left.pop(offset, None)
        self.gone.pop(offset, None)
        if offset >= self.base:
            self.done.add(offset)
        while self.base in self.done:
            self.done.discard(self.base)
            self.base += 1

    @property
    def due(self) -> bool:
        """Whether ``base`` has moved past the last commit."""
        return self.base > self.sent

    @property
    def pinned(self) -> bool:
        """Whether the handle must keep the partition: it holds claims there, or finished
        deliveries it could not commit yet (another owner would deliver them again)."""
        return bool(self.held or self.done or self.gone) or self.due

    def revoke(self) -> None:
        """The partition was taken away: buffered records are dropped (fetched again if it
        comes back), claims stay held."""
        self.assigned = False
        self.upto = None
        self.buffered.clear()


class Offsets:
    """Every partition's :class:`PartitionState`, and the commits of what is finished."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self.parts: dict[TopicPartition, PartitionState] = {}
        self._dirty: set[TopicPartition] = set()
        """Partitions whose finished offset may have moved past the last commit."""
        self._committing: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None
        """The commit that starts once the running one ends, shared by its callers."""

    @property
    def dirty(self) -> bool:
        """Whether a commit may have something to write."""
        return bool(self._dirty)

    def arrive(self, subscription: str, tp: TopicPartition, offset: int) -> PartitionState | None:
        """A fetched record: its partition's state when the record is new here, else ``None``."""
        part = self.parts.get(tp)
        if part is None:
            part = self.parts[tp] = PartitionState.starting_at(subscription, offset)
        self._dirty.add(tp)  # arriving may finish skipped offsets, or find the commit behind
        return part if part.arrive(offset) else None

    def hold(self, tp: TopicPartition, offset: int) -> None:
        """A waiting delivery of the record at ``offset`` is claimed."""
        part = self.parts[tp]
        _less(part.buffered, offset)
        part.held[offset] += 1

    def release(self, tp: TopicPartition, offset: int) -> bool:
        """A held delivery waits again: whether it can (its partition is still assigned)."""
        part = self.parts.get(tp)
        if part is None:
            return False
        _less(part.held, offset)
        if not part.assigned:
            return False
        part.buffered[offset] += 1
        return True

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """The record at ``offset`` is finished whole (skipped: nothing in it to deliver)."""
        part = self.parts.get(tp)
        if part is not None:
            part.finish(offset)
            self._dirty.add(tp)

    def finish_one(self, tp: TopicPartition, offset: int, key: Key, *, held: bool | None = True) -> None:
        """Delivery ``key`` of the record at ``offset`` is finished. ``held``: it was claimed
        (``True``) or waiting (``False``); ``None``: neither (a second copy of a delivery this
        handle has from another record, or one moved or dropped as it arrived)."""
        part = self.parts.get(tp)
        if part is not None:
            if held is not None:
                _less(part.held if held else part.buffered, offset)
            part.finish_one(offset, key)
            self._dirty.add(tp)

    def waiting(self, tp: TopicPartition, offset: int) -> bool:
        part = self.parts.get(tp)
        return part is not None and part.buffered[offset] > 0

    def pinned(self) -> set[TopicPartition]:
        return {tp for tp, part in self.parts.items() if part.pinned}

    def progress(self, tp: TopicPartition) -> tuple[int, int]:
        """``(base, finished above it)`` of ``tp``."""
        part = self.parts.get(tp)
        return (part.base, len(part.done)) if part is not None else (0, 0)

    def assign(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            part = self.parts.get(tp)
            if part is not None:
                part.assigned = True

    def revoke(self, tp: TopicPartition) -> str | None:
        """``tp`` was taken away: the subscription whose waiting deliveries of it to drop."""
        part = self.parts.get(tp)
        if part is None:
            return None
        dropping = part.subscription if part.buffered else None
        part.revoke()
        if not part.pinned:
            del self.parts[tp]
        return dropping

    def drop(self, topic: str) -> None:
        for tp in [tp for tp in self.parts if tp.topic == topic]:
            del self.parts[tp]

    def clear(self) -> None:
        self.parts.clear()

    async def commit(self, member: AIOKafkaConsumer | None) -> None:
        """Commit what is due as ``member``. One commit runs at a time and callers arriving
        meanwhile share the next: a thousand workers finishing together make two commits, not
        a thousand (which timed out)."""
        running = self._committing
        if running is None or running.done():
            task = self._committing = asyncio.ensure_future(self._commit_due(member))
            task.add_done_callback(_retrieved)
            await asyncio.shield(task)
            return
        # One commit is running and may have started before this caller's offsets were done:
        # wait for the next, which every caller arriving meanwhile shares (each waiting its
        # own turn made as many commits, and as many wake-ups of every waiter, as callers).
        if self._next is None:
            self._next = asyncio.ensure_future(self._commit_next(member))
            self._next.add_done_callback(_retrieved)
        await asyncio.shield(self._next)

    async def _commit_next(self, member: AIOKafkaConsumer | None) -> None:
        while (running := self._committing) is not None and not running.done():
            with contextlib.suppress(Exception):  # its own callers get its error
                await asyncio.shield(running)
        self._next = None
        task = self._committing = asyncio.ensure_future(self._commit_due(member))
        task.add_done_callback(_retrieved)
        await task

    def commit_soon(self, member: AIOKafkaConsumer | None) -> None:
        """Start a commit of what is due unless one is running, without waiting for it: for
        offsets nobody waits on (records skipped or found twice by the fetch), so the fetch loop
        never queues behind the workers' commits."""
        if self._dirty and (self._committing is None or self._committing.done()):
            task = self._committing = asyncio.ensure_future(self._commit_due(member))
            task.add_done_callback(_logged)

    async def _commit_due(self, member: AIOKafkaConsumer | None) -> None:
        due: dict[TopicPartition, int] = {}
        for tp in list(self._dirty):
            part = self.parts.get(tp)
            if part is None or not part.due:
                self._dirty.discard(tp)
            elif part.assigned:
                due[tp] = part.base
        if member is None or not due:
            return
        try:
            async with kafka_errors("committing finished deliveries", self._timeout):
                await member.commit(due)
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, CommitFailedError | IllegalStateError):
                # A rebalance is under way: committed at the revocation, or once the partition
                # (pinned while the commit is due) is assigned again.
                log.info("commit deferred: %s", exc)
                return
            raise
        for tp, offset in due.items():
            part = self.parts.get(tp)
            if part is not None:
                part.sent = max(part.sent, offset)


def _less(counts: Counter[int], offset: int) -> None:
    if counts[offset] > 1:
        counts[offset] -= 1
    else:
        counts.pop(offset, None)


def _retrieved(task: asyncio.Future[None]) -> None:
    """Mark a commit's error seen: the caller that started it may have been cancelled."""
    if not task.cancelled():
        task.exception()



def _logged(task: asyncio.Future[None]) -> None:
    """A commit nobody waits on: its error is only logged (the next commit includes its offsets)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("committing finished deliveries: %s", exc)
