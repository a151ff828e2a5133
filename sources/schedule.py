"""PingSource schedules: Knative's cron syntax, parsed and run by croniter, in any IANA time zone.

Syntax (what Knative's ``robfig/cron`` parser accepts for PingSource):

* 5 fields ``minute hour day-of-month month day-of-week``, or 6 with a leading ``second``;
  each field a list of ``*``, ``?``, numbers, ranges ``a-b`` and steps ``/n``; month and weekday
  names (``JAN``, ``MON``) in their own fields. Day-of-month and day-of-week both restricted
  means either may match (classic cron).
* Descriptors ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight``
  ``@hourly``; ``@every <duration>`` is refused, as Knative refuses it.
* The zone is ``spec.timezone``, or a ``CRON_TZ=<zone>`` / ``TZ=<zone>`` prefix in the schedule
  (not both); without either, UTC (Knative's adapter runs in a UTC container).
* croniter extensions Knative does not have (``L``, ``W``, ``#``, ``H``, a 7th year field) are
  refused, and so is a schedule that never fires (``0 0 30 2 *``).

Firing instants (:func:`next_fire`) follow the wall clock of the zone, exactly as robfig/cron
does: a tick fires at every instant whose local time matches. On a spring-forward day the
skipped local times do not occur, so ``30 2 * * *`` in New York does not fire that day; on a
fall-back day the repeated hour occurs twice, so ``30 1 * * *`` fires twice (EDT, then EST).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from broker.errors import WeirError

DEFAULT_SCHEDULE = "* * * * *"
"""Knative's default ``spec.schedule``: every minute."""

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_MONTHS = frozenset("jan feb mar apr may jun jul aug sep oct nov dec".split())
_WEEKDAYS = frozenset("sun mon tue wed thu fri sat".split())
_VALUE = r"(?:[0-9]+|[A-Za-z]{3})"
_ITEM = re.compile(rf"(?:\*|\?|{_VALUE}(?:-{_VALUE})?)(?:/[0-9]+)?")
_NAME = re.compile(r"[A-Za-z]{3}")

_STEP = timedelta(hours=6)
"""Window in which the zone's UTC offset is assumed to change at most once (tzdata: months apart)."""
_EPS = timedelta(microseconds=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class InvalidSchedule(WeirError):
    """A schedule or time zone Knative would refuse; ``field`` is ``"schedule"`` or ``"timezone"``."""

    def __init__(self, reason: str, *, field: str = "schedule") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A validated schedule: the cron ``expression`` croniter runs (descriptors expanded, zone
    prefix removed; ``seconds`` when it has the leading seconds field) in ``timezone``."""

    expression: str
    seconds: bool
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_schedule(text: str, timezone: str = "") -> Schedule:
    """The :class:`Schedule` for ``spec.schedule`` (``""``: :data:`DEFAULT_SCHEDULE`) and
    ``spec.timezone`` (``""``: none). Raises :class:`InvalidSchedule`."""
    if "@every" in text:
        raise InvalidSchedule("unsupported descriptor @every")
    spec = text.strip() or DEFAULT_SCHEDULE
    zone_field = "timezone"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        if timezone:
            raise InvalidSchedule("a CRON_TZ= or TZ= prefix cannot be combined with spec.timezone")
        prefix, _, spec = spec.partition(" ")
        timezone, zone_field = prefix.partition("=")[2], "schedule"
        spec = spec.strip()
        if not spec:
            raise InvalidSchedule(f"no cron expression after {prefix}")
    zone_name = timezone or "UTC"
    _zone(zone_name, zone_field)
    if spec.startswith("@"):
        if spec not in _DESCRIPTORS:
            raise InvalidSchedule(f"unrecognized descriptor {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"expected 5 fields, or 6 with leading seconds; got {len(fields)} in {spec!r}")
    names = _FIELD_NAMES if len(fields) == 6 else _FIELD_NAMES[1:]
    for name, field in zip(names, fields, strict=True):
        _check_field(name, field)
    schedule = Schedule(expression=" ".join(fields), seconds=len(fields) == 6, timezone=zone_name)
    try:
        croniter(schedule.expression, second_at_beginning=schedule.seconds)
        next_fire(schedule, _EPOCH)
    except CroniterBadDateError:
        raise InvalidSchedule(f"{spec!r} never fires: no date matches it") from None
    except CroniterError as exc:
        raise InvalidSchedule(f"{spec!r}: {exc}") from None
    return schedule


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"provided bad location {name}", field=field) from None


def _check_field(name: str, field: str) -> None:
    """Refuse what croniter accepts but Knative's parser does not (L, W, #, H, stray names)."""
    allowed = _MONTHS if name == "month" else _WEEKDAYS if name == "day-of-week" else frozenset()
    for item in field.split(","):
        if _ITEM.fullmatch(item) is None:
            raise InvalidSchedule(f"{name} field {field!r}: {item!r} is not supported")
        for word in _NAME.findall(item):
            if word.lower() not in allowed:
                raise InvalidSchedule(f"{name} field {field!r}: unknown name {word!r}")


def next_fire(schedule: Schedule, after: datetime) -> datetime:
    """The first instant strictly after ``after`` (timezone-aware) at which ``schedule`` fires,
    in the schedule's zone. Pure: depends on nothing but its arguments."""
    return next(fires(schedule, after))


def fires(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Every instant after ``after`` at which ``schedule`` fires, ascending, without end.

    The zone's UTC offset is constant between transitions, and within one constant-offset
    segment the matching instants are the matching wall-clock times minus that offset, which
    croniter enumerates on naive datetimes. Segments are found by probing the offset every 6 h
    and bisecting to the exact transition, so skipped local times never match and repeated ones
    match once per occurrence (see the module docstring).
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = schedule.zone
    lower = after.astimezone(UTC)  # exclusive bound: every instant yielded is later
    while True:
        offset = _offset(zone, lower + _EPS)
        wall = (lower + offset).replace(tzinfo=None)
        times = croniter(schedule.expression, wall, second_at_beginning=schedule.seconds)
        candidate = (times.get_next(datetime) - offset).replace(tzinfo=UTC)
        while True:
            end = lower + _STEP
            moved = _offset(zone, end) != offset
            if moved:
                end = _transition(zone, lower, end, offset)
            if candidate < end or (candidate == end and not moved):
                yield candidate.astimezone(zone)
                lower = candidate
                candidate = (times.get_next(datetime) - offset).replace(tzinfo=UTC)
            elif moved:
                lower = end - _EPS  # the new segment starts at ``end`` itself
                break
            else:
                lower = end


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _transition(zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta) -> datetime:
    """The first instant in ``(low, high]`` whose offset is not ``offset`` (``high``'s is not)."""
    while high - low > _EPS:
        middle = low + (high - low) / 2
        if _offset(zone, middle) == offset:
            low = middle
        else:
            high = middle
    return high
