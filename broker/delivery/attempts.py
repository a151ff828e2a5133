"""Retry policy: which outcomes are retried, how long to wait, and the retry loop itself.

Classification follows Knative's ``SelectiveRetry`` (reference §2.D):

* 2xx: success. Only a ``200`` may carry a reply (see :mod:`broker.delivery.courier`).
* 5xx: the destination failed; it may recover.
* 404: the endpoint may be starting (a pod becoming ready answers 404 for a moment).
* 408: the destination timed out reading the request.
* 409: conflict or "processing in progress"; a later attempt may find the work done.
* 429: the destination is overloaded and asks to slow down.
* Connection errors and timeouts (:class:`~broker.errors.TransportError`): retried.
* Every other 4xx, 3xx and 1xx is final: the event goes straight to the dead-letter sink. 3xx and
  1xx are reserved by the spec and are errors, not redirects to follow.

Waits (reference §3.3, Weir's choice of the ambiguous exponent origin): before retry ``k``
(k = 1 for the first re-attempt) Weir waits ``d * 2**(k-1)`` (exponential) or ``d * k``
(linear), capped by ``backoff_max``. On 429 and 503 a ``Retry-After`` header raises the wait to
``max(backoff, min(retry_after, retry_after_max))``; ``retry_after_max == 0`` ignores it.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from broker.delivery.sender import Response
from broker.delivery.spec import DeliverySpec
from broker.errors import BadResponse, DeliveryError, RetriableResponse

E = TypeVar("E", bound=BaseException)

RETRIABLE_4XX = frozenset({404, 408, 409, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Only these statuses have their ``Retry-After`` honoured (Knative MT behaviour)."""


def is_retriable(status: int) -> bool:
    """Whether a failed response with this HTTP status is retried (5xx, 404, 408, 409, 429)."""
    return status >= 500 or status in RETRIABLE_4XX


def backoff(spec: DeliverySpec, k: int) -> float:
    """Seconds to wait before retry ``k`` (k >= 1) from the policy alone, ``backoff_max`` applied."""
    if spec.backoff_policy == "exponential":
        wait = spec.backoff_delay * 2.0 ** (k - 1)
    else:
        wait = spec.backoff_delay * k
    if spec.backoff_max is not None:
        wait = min(wait, spec.backoff_max)
    return max(wait, 0.0)


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or ``None`` when it cannot be parsed.

    ``value`` is delta-seconds (a non-negative integer) or an HTTP-date; ``now`` is Unix time in
    seconds, used to turn a date into a delay. A date in the past means 0.
    """
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 HTTP-dates are always GMT; parsedate_to_datetime leaves "-0000" naive.
        return None
    return max(moment.timestamp() - now, 0.0)


def wait_before(spec: DeliverySpec, k: int, error: BaseException | None) -> float:
    """Seconds to wait before retry ``k`` after ``error`` (the previous attempt's failure)."""
    wait = backoff(spec, k)
    if (
        isinstance(error, DeliveryError)
        and error.status in RETRY_AFTER_STATUSES
        and error.retry_after is not None
        and spec.retry_after_max > 0
    ):
        wait = max(wait, min(error.retry_after, spec.retry_after_max))
    return wait


def raise_for(url: str, response: Response, now: float | None = None) -> None:
    """Return on a 2xx; otherwise raise the error the response amounts to.

    Retriable statuses raise :class:`RetriableResponse` (with ``retry_after`` parsed on
    429/503), the rest :class:`BadResponse`. The message reads ``"HTTP <status> from <url>"``.
    For attempt functions: the error is raised without being bound to a name, because a frame
    that holds the exception it raised forms a cycle (exception, traceback, frame) that only the
    cycle collector frees.
    """
    if not 200 <= response.status < 300:
        raise _error(url, response, now)


def _error(url: str, response: Response, now: float | None) -> DeliveryError:
    status = response.status
    message = f"HTTP {status} from {url}"
    if not is_retriable(status):
        return BadResponse(message, status=status, body=response.body)
    retry_after = None
    header = response.headers.get("retry-after")
    if header is not None and status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(header, time.time() if now is None else now)
    return RetriableResponse(message, status=status, body=response.body, retry_after=retry_after)


def untraced(error: E) -> E:
    """``error`` without its traceback and chained errors, kept as a plain value once caught.

    The traceback holds the frames the error passed through, and those frames often hold the
    error, or an error chained to it (tenacity keeps each attempt's outcome; an attempt that
    fails while the first failure is being handled chains to it): cycles that only the cycle
    collector frees. With a sink failing every attempt, the collector's passes took 5-7 ms of
    the event loop every few seconds, a pause the healthy Triggers' deliveries waited out
    (bench/RESULTS.md, S5).
    """
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _should_retry(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and error.retriable


async def deliver_with_retries(
    attempt: Callable[[int], Awaitable[object]],
    spec: DeliverySpec,
    *,
    on_retry: Callable[[DeliveryError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryError | None:
    """Run ``attempt(n)`` (n = 1, 2, ...) until it returns, at most ``spec.retry + 1`` times.

    ``attempt`` signals failure by raising :class:`~broker.errors.DeliveryError`; only errors
    with ``retriable`` set are tried again, after :func:`wait_before` seconds. Returns ``None``
    once an attempt returned, else the last error (:func:`untraced`) when attempts ran out or
    an error was not retriable. Any other exception propagates at once. ``on_retry(error,
    wait)`` is called before each wait.
    """
    # Most deliveries succeed first time; building a tenacity retrier costs more than the
    # attempt's own bookkeeping, so the retry machinery is entered only once a retry is due.
    try:
        await attempt(1)
    except DeliveryError as error:
        return await retry_after(error, attempt, spec, on_retry=on_retry, sleep=sleep)
    return None


async def retry_after(
    first: DeliveryError,
    attempt: Callable[[int], Awaitable[object]],
    spec: DeliverySpec,
    *,
    on_retry: Callable[[DeliveryError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryError | None:
    """:func:`deliver_with_retries` once attempt 1 has failed with ``first``: returns ``first``
    when it is final, else runs ``attempt(2)``, ``attempt(3)``, ... as that function does.

    For callers that make the first attempt themselves, on the path every delivery takes.
    """
    first = untraced(first)  # later attempts fail while it is handled, and chain to it
    if not first.retriable or spec.retry <= 0:
        return first
    pause = wait_before(spec, 1, first)
    if on_retry is not None:
        on_retry(first, pause)
    await sleep(pause)

    count = 1

    async def once() -> object:
        nonlocal count
        count += 1
        return await attempt(count)

    def wait(state: RetryCallState) -> float:
        # tenacity's attempt n is overall attempt n + 1, so the wait after it is before retry n + 1.
        error = state.outcome.exception() if state.outcome is not None else None
        return wait_before(spec, state.attempt_number + 1, error)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(error, DeliveryError):
            on_retry(error, state.upcoming_sleep)

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop_after_attempt(spec.retry),
        wait=wait,
        retry=retry_if_exception(_should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        await retrying(once)
    except DeliveryError as error:
        return untraced(error)
    finally:
        # tenacity keeps the last call's actions, which refer back to the retrier: a cycle per
        # delivery that would otherwise wait for the collector (see untraced).
        retrying.iter_state.reset()
    return None
