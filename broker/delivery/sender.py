"""The sender seam: one HTTP POST of one CloudEvent, no retries.

Retry classification and backoff live in :mod:`broker.delivery.attempts`; a sender only reports
what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from broker.event import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """What the destination answered. ``headers`` keys are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Sender(Protocol):
    """Posts events to absolute HTTP URLs."""

    async def send(
        self,
        url: str,
        event: Event,
        *,
        structured: bool = False,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST ``event`` to ``url`` (binary mode unless ``structured``) and return the response.

        ``timeout`` bounds the whole attempt in seconds (``None``: no bound). Raises
        :class:`~broker.errors.TransportError` when no response arrived (connection error or
        timeout); any HTTP status, 5xx included, is returned, not raised.
        """

    async def close(self) -> None:
        """Release connections."""
