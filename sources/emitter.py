"""The :class:`~sources.base.Emitter` every source delivers through: one sink URL, retries, no loss.

Per event, :class:`SinkEmitter`:

1. adds the source's ``ceOverrides.extensions`` (set or replaced; a context attribute such as
   ``type`` or ``id`` can never be overridden, which the constructor enforces);
2. POSTs it to the sink with the kernel's :class:`~broker.delivery.sender.Sender`, binary mode
   (structured when ``delivery.structured``), each attempt bounded by ``delivery.timeout``;
3. classifies the response as the Broker's dispatcher does
   (:func:`broker.delivery.attempts.raise_for`): any 2xx accepts the event (a reply body is
   ignored: sources do not take replies); 5xx, 404, 408, 409, 429 and transport errors are
   retried per ``delivery``; any other status is final at once;
4. when the sink never accepted it: posts it, with Knative's ``knativeerror*`` extensions, to
   ``delivery.dead_letter_sink`` if one is set (same retry policy), and when there is no such sink
   or it failed too, hands the event and the sink's last error to the ``fallback`` (the control
   plane records it in the Broker's dead-letter record, or :func:`log_fallback` logs it in full).

:data:`SOURCE_DEFAULT_DELIVERY` is what Knative's adapters do: 5 retries, waiting 100, 200, 400,
800 and 1600 ms, each attempt bounded to 30 s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from broker.bindings.json_format import to_json
from broker.bindings.validate import check_name
from broker.delivery.attempts import deliver_with_retries, raise_for
from broker.delivery.deadletter import error_extensions
from broker.delivery.sender import Sender
from broker.delivery.spec import DeliverySpec
from broker.errors import DeliveryError, InvalidEvent
from broker.event import Event

log = logging.getLogger("weir.sources")

Fallback = Callable[[Event, DeliveryError], Awaitable[None]]
"""Records an event the sink never accepted, with the sink's last error. Must not lose it."""

SOURCE_DEFAULT_DELIVERY = DeliverySpec(retry=5, backoff_policy="exponential", backoff_delay=0.1, timeout=30.0)
"""Knative's adapters: 5 retries, waits of 100, 200, 400, 800, 1600 ms; 30 s per attempt."""

CONTEXT_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        # CloudEvents 0.3 names, so an override cannot reintroduce them either.
        "schemaurl",
        "datacontentencoding",
    }
)
"""Attributes ``ceOverrides`` may never set: they describe the event, not extend it."""


def check_overrides(overrides: Mapping[str, str]) -> None:
    """Raise :class:`~broker.errors.InvalidEvent` when a key is a context attribute or not a valid
    CloudEvents attribute name (lower-case letters and digits)."""
    for name in overrides:
        if name in CONTEXT_ATTRIBUTES:
            raise InvalidEvent(f"ceOverrides cannot set the context attribute {name!r}, only extensions")
        check_name(name)


class SinkEmitter:
    """Delivers one source's events to one sink URL; see the module docstring.

    ``emit`` returns ``True`` when the sink accepted the event, ``False`` when it did not and the
    event went to the dead-letter sink or the fallback. It never raises for delivery failures; a
    fallback that raises is logged with the full event.
    """

    def __init__(
        self,
        *,
        sender: Sender,
        url: str,
        delivery: DeliverySpec = SOURCE_DEFAULT_DELIVERY,
        overrides: Mapping[str, str] | None = None,
        fallback: Fallback,
    ) -> None:
        self._sender = sender
        self._url = url
        self._delivery = delivery
        self._overrides = dict(overrides or {})
        check_overrides(self._overrides)
        self._fallback = fallback

    @property
    def url(self) -> str:
        """The sink URL events are posted to."""
        return self._url

    async def emit(self, event: Event) -> bool:
        """Deliver ``event`` with the overrides applied; see the class docstring."""
        if self._overrides:
            event = event.with_attributes(self._overrides)
        failure = await self._post(self._url, event)
        if failure is None:
            return True
        log.warning("source event %s (%s) not accepted by %s: %s", event.id, event.type, self._url, failure)
        sink = self._delivery.dead_letter_sink
        if sink is not None:
            error = await self._post(sink, event.with_attributes(error_extensions(self._url, failure)))
            if error is None:
                return False
            log.warning("dead-letter sink %s refused source event %s: %s", sink, event.id, error)
        try:
            await self._fallback(event, failure)
        except Exception:
            # The fallback is the last place the event could be kept; never lose it silently.
            log.exception(
                "recording undelivered source event failed; full event: %s", to_json(event).decode()
            )
        return False

    async def _post(self, url: str, event: Event) -> DeliveryError | None:
        """Deliver to ``url`` with retries; ``None`` once accepted, else the last error."""
        spec = self._delivery

        async def attempt(n: int) -> None:
            response = await self._sender.send(url, event, structured=spec.structured, timeout=spec.timeout)
            raise_for(url, response)

        def on_retry(error: DeliveryError, wait: float) -> None:
            log.debug("retrying source event %s to %s in %.3f s: %s", event.id, url, wait, error)

        return await deliver_with_retries(attempt, spec, on_retry=on_retry)


def log_fallback(logger: logging.Logger = log) -> Fallback:
    """A fallback that logs the undelivered event in full (structured JSON) at ERROR level."""

    async def record(event: Event, error: DeliveryError) -> None:
        logger.error(
            "source event %s was never accepted by its sink (%s); full event: %s",
            event.id,
            error,
            to_json(event).decode(),
        )

    return record
