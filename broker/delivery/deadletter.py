"""What happens to an event its subscriber did not accept: the dead-letter sink, else the store.

The dead-letter event is the event as the subscriber got it (no ``knativebrokerttl``) plus
Knative's error extensions (reference §2.F, Weir's choices from §9.7):

* ``knativeerrordest``: the URL whose attempt failed last.
* ``knativeerrorcode``: that attempt's HTTP status as a string; ``"500"`` when no response
  arrived (connection error, timeout) or the failure happened after the response.
* ``knativeerrordata``: standard padded base64 of the first 768 bytes of the response body (or
  of the transport error's text), so the value stays within 1024 characters.

Delivery to the sink is retried with the subscription's own policy, without ``Prefer: reply``
and without ``Kn-Namespace``; any 2xx accepts it and a reply in the response is ignored. When
there is no sink, or the sink fails too, :meth:`EventStore.dead_letter` keeps the event in the
store's dead-letter record. Nothing is dropped silently.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass

from broker.delivery.attempts import deliver_with_retries, raise_for
from broker.delivery.metrics import Outcome, SubscriptionStats
from broker.delivery.sender import Sender
from broker.delivery.spec import DeliverySpec
from broker.errors import DeliveryError
from broker.event import ERROR_CODE, ERROR_DATA, ERROR_DEST, Event
from broker.store.base import DeadLetter, Delivery, EventStore

log = logging.getLogger(__name__)

ERROR_DATA_MAX_BYTES = 768
"""Body bytes kept in ``knativeerrordata``: 768 bytes are exactly 1024 base64 characters."""

NO_RESPONSE_CODE = "500"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """How delivery to the subscriber ended: the last error, where, after how many attempts."""

    url: str
    error: DeliveryError
    attempts: int


def error_extensions(url: str, error: DeliveryError) -> dict[str, str]:
    """``knativeerrordest``/``code``/``data`` for a failed attempt at ``url``."""
    code = NO_RESPONSE_CODE if error.status is None else str(error.status)
    data = base64.b64encode(error.body[:ERROR_DATA_MAX_BYTES]).decode("ascii")
    return {ERROR_DEST: url, ERROR_CODE: code, ERROR_DATA: data}


def dead_letter_event(event: Event, failure: Failure) -> Event:
    """``event`` (as delivered) with the error extensions of ``failure``."""
    return event.with_attributes(error_extensions(failure.url, failure.error))


class DeadLetterHandler:
    """Gives up on events: dead-letter sink first, the store's dead-letter record as last resort."""

    def __init__(self, *, store: EventStore, sender: Sender, default_timeout: float | None) -> None:
        self._store = store
        self._sender = sender
        self._default_timeout = default_timeout

    async def give_up(
        self,
        delivery: Delivery,
        event: Event,
        failure: Failure,
        *,
        spec: DeliverySpec,
        stats: SubscriptionStats,
    ) -> Outcome:
        """Dispose of an undeliverable ``event`` (as delivered) and say where it went.

        ``"dead_letter_sink"``: the sink accepted it; the caller still has to finish the
        delivery. ``"dead_letter_record"``: recorded in the store, which also finished the
        delivery. Raises :class:`~broker.errors.StoreError` when even the record cannot be
        written; the delivery then stays pending.
        """
        sink = spec.dead_letter_sink
        if sink is None:
            await self.record(delivery, event, reason=str(failure.error), attempts=failure.attempts,
                              status=failure.error.status)
            return "dead_letter_record"
        letter = dead_letter_event(event, failure)
        timeout = self._default_timeout if spec.timeout is None else spec.timeout

        sink_attempts = 0

        async def attempt(n: int) -> None:
            nonlocal sink_attempts
            sink_attempts = n
            stats.attempt()
            response = await self._sender.send(sink, letter, structured=spec.structured, timeout=timeout)
            raise_for(sink, response)

        def on_retry(error: DeliveryError, wait: float) -> None:
            stats.retries += 1

        error = await deliver_with_retries(attempt, spec, on_retry=on_retry)
        if error is None:
            return "dead_letter_sink"
        log.warning("dead-letter sink %s refused %s seq %d: %s", sink, delivery.subscription,
                    delivery.seq, error)
        await self.record(
            delivery,
            event,
            reason=f"{failure.error}; dead-letter sink failed: {error}",
            attempts=failure.attempts + sink_attempts,
            status=failure.error.status,
        )
        return "dead_letter_record"

    async def record(
        self, delivery: Delivery, event: Event, *, reason: str, attempts: int, status: int | None
    ) -> None:
        """Keep ``event`` in the store's dead-letter record and finish its delivery."""
        await self._store.dead_letter(
            DeadLetter(
                log=delivery.log,
                subscription=delivery.subscription,
                seq=delivery.seq,
                event=event,
                reason=reason,
                attempts=attempts,
                status=status,
                dead_at=time.time(),
            )
        )
        log.warning("dead-lettered %s seq %d of %s into the store: %s", delivery.subscription,
                    delivery.seq, delivery.log, reason)
