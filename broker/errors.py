"""Weir's one error tree.

Every error carries ``retriable``: whether the same operation may succeed if tried again later.
Lower-layer exceptions (sqlite3, aiohttp, nats, aiokafka) are mapped to these at the boundary of
the module that calls them, so callers never catch a library's exception type.

::

    WeirError
    ├── InvalidEvent            400: unparsable or invalid CloudEvent (not retriable)
    ├── EventTooLarge           413: request body above the configured limit (not retriable)
    ├── TTLExhausted            400: knativebrokerttl reached 0, loop suspected (not retriable)
    ├── StoreError              the event store failed
    │   ├── StoreFull           503 + Retry-After: capacity limit reached (retriable)
    │   └── StoreUnavailable    503 + Retry-After: the store cannot be reached (retriable)
    ├── DeliveryError           one delivery attempt failed
    │   ├── TransportError      connection refused/reset, DNS, timeout (retriable)
    │   ├── BadResponse         status not retriable, or an invalid reply (not retriable)
    │   └── RetriableResponse   5xx, 404, 408, 409, 429 (retriable)
    └── ManifestError           a manifest is invalid (not retriable); see weir.manifests
"""

from __future__ import annotations


class WeirError(Exception):
    """Root of every error Weir raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable

    def __str__(self) -> str:
        return self.message


class InvalidEvent(WeirError):
    """The request does not hold a valid CloudEvent; the message says which rule it broke."""


class EventTooLarge(WeirError):
    """The request body exceeds the configured maximum (bytes)."""


class TTLExhausted(WeirError):
    """``knativebrokerttl`` is 0 or below: the event has looped through Brokers too often."""


class StoreError(WeirError):
    """The event store could not complete an operation."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, retriable: bool | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.retry_after = retry_after
        """Seconds a client should wait before trying again (sent as ``Retry-After``)."""


class StoreFull(StoreError):
    """A capacity limit (bytes or events) is reached; nothing was written."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed to write; nothing was acknowledged."""


class DeliveryError(WeirError):
    """One attempt to deliver an event to a destination failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        retry_after: float | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status
        """HTTP status of the response, ``None`` when no response arrived."""
        self.body = body
        """The response body (or the transport error's text, UTF-8)."""
        self.retry_after = retry_after
        """Seconds from a ``Retry-After`` header on 429/503, when present and parseable."""


class TransportError(DeliveryError):
    """No usable HTTP response: connection error or timeout."""

    retriable = True


class RetriableResponse(DeliveryError):
    """The destination answered with a status Knative retries (5xx, 404, 408, 409, 429)."""

    retriable = True


class BadResponse(DeliveryError):
    """The destination answered with a status that is never retried, or an invalid reply."""


class ManifestError(WeirError):
    """One or more manifest problems; ``problems`` lists each as a full sentence."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
