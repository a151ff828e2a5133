"""Routing leases of the NATS store: one live holder per log, kept in a KV bucket with a TTL.

The bucket's ``max_age`` is the lease TTL, so a key nobody renews disappears TTL seconds after
its last write. A handle takes a lease by ``create`` (succeeds only when the key is absent or
deleted) and its background task renews it every TTL/3 with ``update`` against the revision it
last wrote; an update refused for a wrong revision means another handle took the lease. The
holder trusts its lease for :data:`TRUST` of the TTL after the start of its last successful
write, which ends before the key can expire at the server, so two handles never both believe
they hold it. :meth:`Leases.held` reads local state only; the first call for a log also tries
to take it at once. :meth:`Leases.close` deletes the keys it holds so another handle takes over
without waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from broker.store.nats_names import Names

log = logging.getLogger(__name__)

TRUST = 0.75
"""Share of the TTL, counted from the start of the last successful write, the holder trusts."""


@dataclass(slots=True)
class _Lease:
    revision: int
    until: float
    """Loop time after which this handle no longer trusts the lease."""


class Leases:
    """The routing leases this handle holds or wants; see the module docstring."""

    def __init__(self, bucket: KeyValue, names: Names, *, ttl: float, owner: str, timeout: float) -> None:
        self._bucket = bucket
        self._names = names
        self._ttl = ttl
        self._owner = owner.encode()
        self._timeout = timeout
        self._held: dict[str, _Lease] = {}
        self._wanted: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def held(self, log_name: str) -> bool:
        """Whether this handle holds ``log_name``'s lease now (local state only, after the first call)."""
        if log_name not in self._wanted:
            self._wanted.add(log_name)
            await self._step(log_name)
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="weir-nats-leases")
        lease = self._held.get(log_name)
        return lease is not None and asyncio.get_running_loop().time() < lease.until

    async def close(self) -> None:
        """Stop renewing and delete the keys this handle holds (best effort)."""
        self.abandon()
        held, self._held = self._held, {}
        for log_name, lease in held.items():
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                key = self._names.key(log_name)
                await asyncio.wait_for(self._bucket.delete(key, last=lease.revision), self._timeout)

    def abandon(self) -> None:
        """Stop renewing without deleting anything, as if the process died."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._wanted.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            await asyncio.gather(*(self._step(log_name) for log_name in list(self._wanted)))

    async def _step(self, log_name: str) -> None:
        """Renew the lease if held, else try to take it."""
        key = self._names.key(log_name)
        lease = self._held.get(log_name)
        started = asyncio.get_running_loop().time()
        try:
            if lease is None:
                revision = await asyncio.wait_for(self._bucket.create(key, self._owner), self._timeout)
            else:
                revision = await asyncio.wait_for(
                    self._bucket.update(key, self._owner, last=lease.revision), self._timeout)
        except nats.js.errors.KeyWrongLastSequenceError:
            if self._held.pop(log_name, None) is not None:
                log.info("routing lease of %s moved to another process", log_name)
            return
        except (TimeoutError, nats.errors.Error) as exc:
            # Keep a held lease until its trust runs out: a reconnect may renew it in time.
            log.debug("routing lease of %s: %s", log_name, exc)
            return
        self._held[log_name] = _Lease(revision, started + self._ttl * TRUST)
