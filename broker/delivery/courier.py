"""One pending delivery carried to its final outcome: attempts, reply, dead letter.

Per attempt the subscriber gets the stored event without ``knativebrokerttl``, in binary mode
(structured when ``DeliverySpec.structured``), with ``Prefer: reply`` and
``Kn-Namespace: <namespace>``. The subscription plan is read again before every attempt, so a
changed subscriber URL, format or timeout applies to the next attempt; the retry schedule is
the one in force when the delivery started.

Responses (status classification in :mod:`broker.delivery.attempts`):

* ``200`` claiming to carry a CloudEvent: the reply is decoded and accepted into the same
  Broker with ``knativebrokerttl`` = (the delivered event's TTL) - 1. A reply whose TTL runs out
  is dropped, counted and logged; the delivery still succeeded. An invalid reply is a
  :class:`~broker.errors.BadResponse` (not retried, dead-lettered). A store failure while
  accepting the reply fails the attempt (retried when the store error is retriable), so the
  subscriber gets the event again rather than the reply being lost.
* Any other 2xx (``202`` included, whatever its body): success, no reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from broker.bindings.http import decode, has_event
from broker.delivery.attempts import raise_for, retry_after
from broker.delivery.deadletter import DeadLetterHandler, Failure
from broker.delivery.metrics import SubscriptionStats
from broker.delivery.sender import Response, Sender
from broker.errors import BadResponse, DeliveryError, InvalidEvent, StoreError, TTLExhausted
from broker.event import ARRIVAL_TIME, TTL, Event
from broker.ingest import Ingest, ttl_of
from broker.routing import SubscriptionPlan
from broker.store.base import Delivery

log = logging.getLogger(__name__)


def arrival_time(event: Event) -> float | None:
    """Unix time of ``knativearrivaltime``, or ``None`` when absent or unparsable."""
    return event.derived(_arrival_time)


def outgoing(stored: Event) -> Event:
    """The event as subscribers get it: the stored one without ``knativebrokerttl``."""
    return stored.derived(_outgoing)


def _outgoing(stored: Event) -> Event:
    return stored.without((TTL,))


def _arrival_time(event: Event) -> float | None:
    text = event.text(ARRIVAL_TIME)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class Courier:
    """Delivers one subscription's events; shared by all of that subscription's in-flight tasks."""

    def __init__(
        self,
        *,
        plan: Callable[[], SubscriptionPlan],
        sender: Sender,
        ingest: Ingest,
        dead_letters: DeadLetterHandler,
        stats: SubscriptionStats,
        default_timeout: float | None,
        max_event_age: float | None,
    ) -> None:
        self._plan = plan
        self._sender = sender
        self._ingest = ingest
        self._dead_letters = dead_letters
        self._stats = stats
        self._default_timeout = default_timeout
        self._max_event_age = max_event_age

    async def carry(self, delivery: Delivery) -> bool:
        """Deliver ``delivery`` until it has a final outcome.

        Returns ``True`` when the caller must still :meth:`~EventStore.finish` it (the
        subscriber or a dead-letter sink accepted it) and ``False`` when the store's
        dead-letter record already finished it. Raises :class:`~broker.errors.StoreError` when
        that record cannot be written: the delivery stays pending and must be tried again.
        """
        stored = delivery.event
        event = outgoing(stored)
        arrived = arrival_time(stored)
        if self._max_event_age is not None and arrived is not None:
            age = time.time() - arrived
            if age > self._max_event_age:
                await self._dead_letters.record(delivery, event, reason="expired", attempts=0, status=None)
                self._stats.outcome("expired", age)
                return False

        url = self._plan().subscriber
        attempts = 0

        async def attempt(n: int) -> None:
            nonlocal url, attempts
            plan = self._plan()
            url, attempts = plan.subscriber, n
            spec = plan.delivery
            self._stats.attempt()
            response = await self._sender.send(
                url,
                event,
                structured=spec.structured,
                timeout=self._default_timeout if spec.timeout is None else spec.timeout,
                headers={"Prefer": "reply", "Kn-Namespace": plan.namespace},
            )
            raise_for(url, response)
            if response.status == 200 and has_event(response.headers):
                await self._accept_reply(delivery, stored, url, response)

        def on_retry(error: DeliveryError, wait: float) -> None:
            self._stats.retries += 1
            log.debug("retrying %s seq %d in %.3f s: %s", delivery.subscription, delivery.seq, wait, error)

        schedule = self._plan().delivery
        try:
            await attempt(1)  # directly: one coroutine frame less on every delivery
        except DeliveryError as first:
            error = await retry_after(first, attempt, schedule, on_retry=on_retry)
            if error is not None:
                failure = Failure(url=url, error=error, attempts=attempts)
                outcome = await self._dead_letters.give_up(
                    delivery, event, failure, spec=self._plan().delivery, stats=self._stats
                )
                self._stats.outcome(outcome, _since(arrived))
                return outcome == "dead_letter_sink"
        self._stats.outcome("delivered", _since(arrived))
        return True

    async def _accept_reply(self, delivery: Delivery, stored: Event, url: str, response: Response) -> None:
        try:
            replies = decode(response.headers, response.body)
        except InvalidEvent as exc:
            raise BadResponse(f"invalid reply from {url}: {exc}", status=response.status,
                              body=response.body, retriable=False) from None
        ttl = ttl_of(stored) - 1
        try:
            await self._ingest.accept(delivery.log, [r.with_attributes({TTL: ttl}) for r in replies])
        except TTLExhausted:
            self._stats.replies_dropped += len(replies)
            log.warning("dropped reply from %s to %s seq %d: %s reached 0 (reply loop?)",
                        url, delivery.subscription, delivery.seq, TTL)
            return
        except InvalidEvent as exc:
            raise BadResponse(f"invalid reply from {url}: {exc}", status=response.status,
                              body=response.body, retriable=False) from None
        except StoreError as exc:
            raise DeliveryError(f"storing the reply from {url} failed: {exc}", body=str(exc).encode(),
                                retriable=exc.retriable) from None
        self._stats.replies += len(replies)


def _since(arrived: float | None) -> float | None:
    return None if arrived is None else time.time() - arrived
