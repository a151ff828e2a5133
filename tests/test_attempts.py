"""Retry policy: status classification, backoff formula and cap, Retry-After, the retry loop."""

from __future__ import annotations

import email.utils

import pytest

from broker.delivery.attempts import (
    backoff,
    deliver_with_retries,
    is_retriable,
    parse_retry_after,
    raise_for,
    wait_before,
)
from broker.delivery.sender import Response
from broker.delivery.spec import DeliverySpec
from broker.errors import BadResponse, DeliveryError, RetriableResponse, TransportError

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (100, False), (103, False),
        (301, False), (302, False), (307, False),
        (400, False), (401, False), (403, False), (405, False), (410, False), (413, False), (422, False),
        (404, True), (408, True), (409, True), (429, True),
        (500, True), (502, True), (503, True), (504, True), (599, True),
    ],
)
def test_is_retriable(status: int, retriable: bool) -> None:
    assert is_retriable(status) is retriable


EXP = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.5)
LIN = DeliverySpec(retry=10, backoff_policy="linear", backoff_delay=2.5)
EXP_CAPPED = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=1.0, backoff_max=5.0)
LIN_CAPPED = DeliverySpec(retry=10, backoff_policy="linear", backoff_delay=1.0, backoff_max=2.5)
NO_DELAY = DeliverySpec(retry=3)


@pytest.mark.parametrize(
    ("spec", "waits"),
    [
        pytest.param(EXP, [0.5, 1.0, 2.0, 4.0, 8.0], id="exponential d*2^(k-1)"),
        pytest.param(LIN, [2.5, 5.0, 7.5, 10.0], id="linear d*k"),
        pytest.param(EXP_CAPPED, [1.0, 2.0, 4.0, 5.0, 5.0], id="exponential capped"),
        pytest.param(LIN_CAPPED, [1.0, 2.0, 2.5, 2.5], id="linear capped"),
        pytest.param(NO_DELAY, [0.0, 0.0, 0.0], id="no delay: immediate retries"),
        pytest.param(
            DeliverySpec(retry=10, backoff_delay=0.2),
            [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4],
            id="broker default",
        ),
    ],
)
def test_backoff(spec: DeliverySpec, waits: list[float]) -> None:
    assert [backoff(spec, k) for k in range(1, len(waits) + 1)] == pytest.approx(waits)


def _http_date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        (" 120 ", 120.0),
        (_http_date(30), 30.0),
        (_http_date(-30), 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
        ("-1", None),
        ("1.5", None),
        ("", None),
        ("soon", None),
        ("Sun, 06 Nov 1994 08:49:37 -0000", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    result = parse_retry_after(value, NOW)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds, abs=1.0)


def _error(status: int | None, retry_after: float | None) -> DeliveryError:
    if status is None:
        return TransportError("connection refused to http://x/")
    return RetriableResponse(f"HTTP {status}", status=status, retry_after=retry_after)


@pytest.mark.parametrize(
    ("spec", "k", "status", "retry_after", "wait"),
    [
        pytest.param(EXP, 1, 429, 2.0, 2.0, id="429 raises the wait"),
        pytest.param(EXP, 1, 503, 2.0, 2.0, id="503 raises the wait"),
        pytest.param(EXP, 5, 429, 2.0, 8.0, id="backoff larger than Retry-After wins"),
        pytest.param(EXP, 1, 500, 2.0, 0.5, id="500 ignores Retry-After"),
        pytest.param(EXP, 1, 429, None, 0.5, id="no header"),
        pytest.param(EXP, 1, None, None, 0.5, id="transport error"),
        pytest.param(DeliverySpec(retry_after_max=5.0), 1, 429, 100.0, 5.0, id="capped by retry_after_max"),
        pytest.param(DeliverySpec(retry_after_max=0.0), 1, 429, 100.0, 0.0, id="retry_after_max 0 ignores"),
    ],
)
def test_wait_before(
    spec: DeliverySpec, k: int, status: int | None, retry_after: float | None, wait: float
) -> None:
    assert wait_before(spec, k, _error(status, retry_after)) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (200, {}, None, None),
        (202, {}, None, None),
        (204, {}, None, None),
        (400, {}, BadResponse, None),
        (302, {"location": "http://elsewhere/"}, BadResponse, None),
        (404, {}, RetriableResponse, None),
        (500, {"retry-after": "3"}, RetriableResponse, None),
        (503, {"retry-after": "3"}, RetriableResponse, 3.0),
        (429, {"retry-after": "7"}, RetriableResponse, 7.0),
        (429, {"retry-after": "garbage"}, RetriableResponse, None),
    ],
)
def test_raise_for(
    status: int, headers: dict[str, str], kind: type[DeliveryError] | None, retry_after: float | None
) -> None:
    response = Response(status=status, headers=headers, body=b"oops")
    if kind is None:
        assert raise_for("http://svc/", response, now=NOW) is None  # type: ignore[func-returns-value]
        return
    with pytest.raises(DeliveryError) as raised:
        raise_for("http://svc/", response, now=NOW)
    error = raised.value
    assert type(error) is kind
    assert error.status == status
    assert error.body == b"oops"
    assert error.retry_after == retry_after
    assert str(error) == f"HTTP {status} from http://svc/"


class Script:
    """An attempt function failing with the given errors in turn, then returning "ok"."""

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)
        self.calls: list[int] = []

    async def __call__(self, n: int) -> str:
        self.calls.append(n)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _failing(status: int) -> DeliveryError:
    return RetriableResponse(f"HTTP {status}", status=status) if is_retriable(status) else BadResponse(
        f"HTTP {status}", status=status
    )


@pytest.mark.parametrize(
    ("retry", "statuses", "calls", "succeeds"),
    [
        pytest.param(3, [500, 500], [1, 2, 3], True, id="500,500,200 with retry 3"),
        pytest.param(2, [503, 503, 503], [1, 2, 3], False, id="retries exhausted"),
        pytest.param(5, [400], [1], False, id="400 is final"),
        pytest.param(0, [500], [1], False, id="retry 0: one attempt"),
        pytest.param(1, [], [1], True, id="first attempt succeeds"),
    ],
)
async def test_deliver_with_retries(
    retry: int, statuses: list[int], calls: list[int], succeeds: bool
) -> None:
    spec = DeliverySpec(retry=retry, backoff_delay=0.25)
    script = Script(*[_failing(s) for s in statuses])
    slept: list[float] = []
    retried: list[int | None] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    error = await deliver_with_retries(
        script, spec, on_retry=lambda e, w: retried.append(e.status), sleep=sleep
    )

    if succeeds:
        assert error is None
    else:
        assert error is not None
        assert error.status == statuses[len(calls) - 1]
        assert error.__traceback__ is None and error.__context__ is None
    assert script.calls == calls
    assert slept == pytest.approx([backoff(spec, k) for k in range(1, len(calls))])
    assert retried == statuses[: len(calls) - 1]


async def test_retry_after_drives_the_wait() -> None:
    spec = DeliverySpec(retry=1, backoff_delay=0.1, retry_after_max=5.0)
    script = Script(RetriableResponse("HTTP 429", status=429, retry_after=3.0))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await deliver_with_retries(script, spec, sleep=sleep) is None
    assert slept == [3.0]


async def test_other_exceptions_propagate_at_once() -> None:
    calls = 0

    async def attempt(n: int) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    with pytest.raises(ValueError):
        await deliver_with_retries(attempt, DeliverySpec(retry=3))
    assert calls == 1
