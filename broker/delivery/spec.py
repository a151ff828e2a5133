"""Resolved delivery settings: Knative's DeliverySpec with destinations already turned into URLs.

Durations are seconds (float). The manifest layer (``weir.manifests``) parses ISO-8601 strings
and resolves ``deadLetterSink`` references; the kernel sees only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BackoffPolicy = Literal["exponential", "linear"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySpec:
    """How one subscription's deliveries are attempted.

    Attempts = ``retry + 1``. The wait before retry ``k`` (k = 1, 2, ...) is
    ``backoff_delay * 2**(k-1)`` (exponential) or ``backoff_delay * k`` (linear), capped by
    ``backoff_max`` when set. On 429 and 503 a ``Retry-After`` header raises the wait to
    ``min(retry_after, retry_after_max)``; ``retry_after_max == 0`` ignores the header.
    """

    retry: int = 0
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: float = 0.0
    backoff_max: float | None = None
    timeout: float | None = None
    """Bound on each single attempt, seconds; ``None`` = the dispatcher's default."""
    retry_after_max: float = 60.0
    dead_letter_sink: str | None = None
    """Absolute URL of the dead-letter sink, or ``None``."""
    structured: bool = False
    """``delivery.format: json``: send structured mode instead of binary."""


BROKER_DEFAULT_DELIVERY = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.2)
"""What a Broker without ``spec.delivery`` gets (Knative's ``config-br-defaults``)."""
