"""PingSource schedules: parsing rules and the pure next-fire function, as tables of datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice

import pytest

from sources.schedule import InvalidSchedule, Schedule, fires, next_fire, parse_schedule

# (schedule, timezone, after, expected next fire in the schedule's zone, ISO 8601 with offset)
NEXT: list[tuple[str, str, str, str]] = [
    # -- five fields ----------------------------------------------------------------------------
    ("* * * * *", "", "2024-05-01T10:00:00+00:00", "2024-05-01T10:01:00+00:00"),
    ("* * * * *", "", "2024-05-01T10:00:59.999999+00:00", "2024-05-01T10:01:00+00:00"),
    ("*/15 * * * *", "", "2024-05-01T14:45:00+00:00", "2024-05-01T15:00:00+00:00"),
    ("*/15 * * * *", "", "2024-05-01T14:59:59+00:00", "2024-05-01T15:00:00+00:00"),
    ("20-35/15 * * * *", "", "2024-05-01T15:45:00+00:00", "2024-05-01T16:20:00+00:00"),
    ("*/15 * * * *", "", "2024-12-31T23:46:00+00:00", "2025-01-01T00:00:00+00:00"),
    ("0 9 * * MON-FRI", "", "2024-05-03T09:00:00+00:00", "2024-05-06T09:00:00+00:00"),
    ("0 0 1,15 * SUN", "", "2024-05-02T00:00:00+00:00", "2024-05-05T00:00:00+00:00"),  # dom OR dow
    ("0 0 * * SUN", "", "2024-05-02T00:00:00+00:00", "2024-05-05T00:00:00+00:00"),
    ("0 12 * JAN,JUL *", "", "2024-05-01T00:00:00+00:00", "2024-07-01T12:00:00+00:00"),
    ("0 0 ? * 1", "", "2024-05-01T00:00:00+00:00", "2024-05-06T00:00:00+00:00"),
    # -- six fields: leading seconds ------------------------------------------------------------
    ("* * * * * *", "", "2024-05-01T10:00:00+00:00", "2024-05-01T10:00:01+00:00"),
    ("* * * * * *", "", "2024-05-01T10:00:00.5+00:00", "2024-05-01T10:00:01+00:00"),
    ("*/10 * * * * *", "", "2024-05-01T10:00:55+00:00", "2024-05-01T10:01:00+00:00"),
    ("30 0 0 * * *", "", "2024-05-01T00:00:30+00:00", "2024-05-02T00:00:30+00:00"),
    ("15 20-35/15 * * * *", "", "2024-05-01T23:35:51+00:00", "2024-05-02T00:20:15+00:00"),
    # -- descriptors ----------------------------------------------------------------------------
    ("@hourly", "", "2024-05-01T10:00:00+00:00", "2024-05-01T11:00:00+00:00"),
    ("@daily", "", "2024-05-01T10:00:00+00:00", "2024-05-02T00:00:00+00:00"),
    ("@midnight", "", "2024-05-01T00:00:00+00:00", "2024-05-02T00:00:00+00:00"),
    ("@weekly", "", "2024-05-01T10:00:00+00:00", "2024-05-05T00:00:00+00:00"),
    ("@monthly", "", "2024-05-01T00:00:00+00:00", "2024-06-01T00:00:00+00:00"),
    ("@yearly", "", "2024-05-01T10:00:00+00:00", "2025-01-01T00:00:00+00:00"),
    ("@annually", "", "2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
    # -- month ends and leap days ---------------------------------------------------------------
    ("0 0 31 * *", "", "2024-01-31T00:00:00+00:00", "2024-03-31T00:00:00+00:00"),
    ("0 0 30 * *", "", "2023-02-01T00:00:00+00:00", "2023-03-30T00:00:00+00:00"),
    ("0 0 29 2 *", "", "2021-03-01T00:00:00+00:00", "2024-02-29T00:00:00+00:00"),
    ("0 0 29 2 *", "", "2096-03-01T00:00:00+00:00", "2104-02-29T00:00:00+00:00"),  # 2100 is not leap
    ("59 23 28-31 * *", "", "2024-02-28T23:59:00+00:00", "2024-02-29T23:59:00+00:00"),
    # -- zones without DST; `after` in another zone ---------------------------------------------
    ("0 9 * * *", "Asia/Tokyo", "2024-05-01T00:00:00+00:00", "2024-05-02T09:00:00+09:00"),
    ("0 9 * * *", "Asia/Tokyo", "2024-04-30T23:59:59+00:00", "2024-05-01T09:00:00+09:00"),
    ("0 9 * * *", "Asia/Kolkata", "2024-05-01T03:29:00+00:00", "2024-05-01T09:00:00+05:30"),
    ("CRON_TZ=Asia/Tokyo 0 9 * * *", "", "2024-05-01T00:00:00+00:00", "2024-05-02T09:00:00+09:00"),
    ("TZ=Asia/Tokyo 0 9 * * *", "", "2024-05-01T00:00:00+00:00", "2024-05-02T09:00:00+09:00"),
    # -- New York spring forward 2012-03-11 02:00 EST -> 03:00 EDT: skipped times do not fire --
    ("30 2 11 3 *", "America/New_York", "2012-03-11T00:00:00-05:00", "2013-03-11T02:30:00-04:00"),
    ("0 * * * *", "America/New_York", "2012-03-11T00:00:00-05:00", "2012-03-11T01:00:00-05:00"),
    ("0 * * * *", "America/New_York", "2012-03-11T01:00:00-05:00", "2012-03-11T03:00:00-04:00"),
    ("0 1 * * *", "America/New_York", "2012-03-11T01:00:00-05:00", "2012-03-12T01:00:00-04:00"),
    ("0 2 * * *", "America/New_York", "2012-03-11T00:00:00-05:00", "2012-03-12T02:00:00-04:00"),
    ("* * * * *", "America/New_York", "2012-03-11T01:59:00-05:00", "2012-03-11T03:00:00-04:00"),
    ("59 59 1 * * *", "America/New_York", "2012-03-11T00:00:00-05:00", "2012-03-11T01:59:59-05:00"),
    # -- New York fall back 2012-11-04 02:00 EDT -> 01:00 EST: repeated times fire twice --------
    ("30 2 4 11 *", "America/New_York", "2012-11-04T00:00:00-04:00", "2012-11-04T02:30:00-05:00"),
    ("30 1 4 11 *", "America/New_York", "2012-11-04T01:45:00-04:00", "2012-11-04T01:30:00-05:00"),
    ("0 * * * *", "America/New_York", "2012-11-04T00:00:00-04:00", "2012-11-04T01:00:00-04:00"),
    ("0 * * * *", "America/New_York", "2012-11-04T01:00:00-04:00", "2012-11-04T01:00:00-05:00"),
    ("0 * * * *", "America/New_York", "2012-11-04T01:00:00-05:00", "2012-11-04T02:00:00-05:00"),
    ("0 1 * * *", "America/New_York", "2012-11-04T01:00:00-04:00", "2012-11-04T01:00:00-05:00"),
    ("0 1 * * *", "America/New_York", "2012-11-04T01:00:00-05:00", "2012-11-05T01:00:00-05:00"),
    ("*/20 * * * *", "America/New_York", "2012-11-04T01:40:00-04:00", "2012-11-04T01:00:00-05:00"),
    # -- Berlin 2024: spring forward 03-31 02:00 -> 03:00, fall back 10-27 03:00 -> 02:00 -------
    ("30 2 * * *", "Europe/Berlin", "2024-03-30T02:30:00+01:00", "2024-04-01T02:30:00+02:00"),
    ("*/30 * * * *", "Europe/Berlin", "2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00"),
    ("30 2 * * *", "Europe/Berlin", "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00"),
    ("30 2 * * *", "Europe/Berlin", "2024-10-27T02:30:00+01:00", "2024-10-28T02:30:00+01:00"),
    ("0 0 * * *", "Europe/Berlin", "2024-10-26T22:00:00+00:00", "2024-10-28T00:00:00+01:00"),
    # -- southern hemisphere and half-hour DST --------------------------------------------------
    ("30 2 * * *", "Australia/Sydney", "2024-10-05T12:00:00+10:00", "2024-10-07T02:30:00+11:00"),
    ("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00+10:30", "2024-10-07T02:15:00+11:00"),
    ("45 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00+10:30", "2024-10-06T02:45:00+11:00"),
]


@pytest.mark.parametrize(("text", "zone", "after", "expected"), NEXT)
def test_next_fire(text: str, zone: str, after: str, expected: str) -> None:
    schedule = parse_schedule(text, zone)
    fired = next_fire(schedule, datetime.fromisoformat(after))
    # isoformat shows the UTC offset, so EDT and EST of the same wall time differ.
    assert fired.isoformat() == datetime.fromisoformat(expected).isoformat()
    assert fired.utcoffset() == datetime.fromisoformat(expected).utcoffset()


def test_fires_across_fall_back_hour() -> None:
    schedule = parse_schedule("0,30 * * * *", "America/New_York")
    start = datetime.fromisoformat("2012-11-04T00:15:00-04:00")
    got = [t.isoformat() for t in islice(fires(schedule, start), 6)]
    assert got == [
        "2012-11-04T00:30:00-04:00",
        "2012-11-04T01:00:00-04:00",
        "2012-11-04T01:30:00-04:00",
        "2012-11-04T01:00:00-05:00",
        "2012-11-04T01:30:00-05:00",
        "2012-11-04T02:00:00-05:00",
    ]


def test_fires_is_strictly_increasing_and_matches_next_fire() -> None:
    schedule = parse_schedule("*/7 * * * * *", "Europe/Berlin")
    start = datetime(2024, 3, 31, 0, 59, 30, tzinfo=UTC)
    ticks = list(islice(fires(schedule, start), 50))
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False))
    assert ticks[1:] == [next_fire(schedule, t) for t in ticks[:-1]]


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(parse_schedule("* * * * *"), datetime(2024, 1, 1))


# (schedule, timezone, field, expected message substring)
INVALID: list[tuple[str, str, str, str]] = [
    ("@every 1m", "", "schedule", "unsupported descriptor @every"),
    ("CRON_TZ=UTC @every 5s", "", "schedule", "unsupported descriptor @every"),
    ("@reboot", "", "schedule", "unrecognized descriptor @reboot"),
    ("@Daily", "", "schedule", "unrecognized descriptor @Daily"),
    ("* * *", "", "schedule", "expected 5 fields, or 6 with leading seconds; got 3"),
    ("* * * * * * *", "", "schedule", "got 7"),
    ("60 * * * *", "", "schedule", "out of range"),
    ("* 24 * * *", "", "schedule", "out of range"),
    ("*/0 * * * *", "", "schedule", "step '0'"),
    ("1-70 * * * *", "", "schedule", "out of bands"),
    ("0 0 L * *", "", "schedule", "day-of-month field 'L': 'L' is not supported"),
    ("0 0 15W * *", "", "schedule", "'15W' is not supported"),
    ("0 0 * * 1#2", "", "schedule", "'1#2' is not supported"),
    ("H * * * *", "", "schedule", "minute field 'H'"),
    ("* * * MON *", "", "schedule", "month field 'MON': unknown name 'MON'"),
    ("* * * * JAN", "", "schedule", "unknown name 'JAN'"),
    ("0 0 30 2 *", "", "schedule", "never fires"),
    ("* * * * *", "Mars/Olympus", "timezone", "provided bad location Mars/Olympus"),
    ("* * * * *", "../etc/passwd", "timezone", "provided bad location"),
    ("CRON_TZ=Mars/Olympus * * * * *", "", "schedule", "provided bad location Mars/Olympus"),
    ("CRON_TZ=UTC * * * * *", "Europe/Berlin", "schedule", "cannot be combined with spec.timezone"),
    ("TZ=UTC", "", "schedule", "no cron expression after TZ=UTC"),
]


@pytest.mark.parametrize(("text", "zone", "field", "message"), INVALID)
def test_invalid(text: str, zone: str, field: str, message: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(text, zone)
    assert caught.value.field == field
    assert message in caught.value.reason


@pytest.mark.parametrize(
    ("text", "zone", "expression", "seconds", "timezone"),
    [
        ("", "", "* * * * *", False, "UTC"),
        ("  */5 * * * *  ", "", "*/5 * * * *", False, "UTC"),
        ("* * * * * *", "Europe/Paris", "* * * * * *", True, "Europe/Paris"),
        ("@weekly", "", "0 0 * * 0", False, "UTC"),
        ("CRON_TZ=Asia/Tokyo @daily", "", "0 0 * * *", False, "Asia/Tokyo"),
    ],
)
def test_parsed(text: str, zone: str, expression: str, seconds: bool, timezone: str) -> None:
    expected = Schedule(expression=expression, seconds=seconds, timezone=timezone)
    assert parse_schedule(text, zone) == expected
