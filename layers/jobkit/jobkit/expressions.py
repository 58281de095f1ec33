"""EventBridge Scheduler expressions: validate them up front, and compute when they fire.

`at(yyyy-mm-ddThh:mm:ss)`, `rate(N minute|minutes|hour|hours|day|days)` and
`cron(minutes hours day-of-month month day-of-week year)`, each in a timezone (IANA name,
default UTC). `parse_expression` raises `InvalidScheduleError` naming what is wrong, so a bad
schedule fails when it is declared, not silently at AWS or never at all.

Cron follows AWS's six-field form: `*`, `?`, numbers, names (JAN-DEC, SUN-SAT), lists, ranges,
steps, and the day specials `L` and `W` (day-of-month) and `L` and `#` (day-of-week);
day-of-week 1-7 is SUN-SAT; one of the two day fields must be `?`. A wall-clock time a DST
change skips does not fire; one it repeats fires once (the first). A cron's occurrences are
looked for up to 2199, AWS's last cron year: `next_after` is None for one that has none left
(30 February, only past years), which `jobkit.recurring.normalize` refuses.

Hand-written: the PyPI packages that read AWS's form (pyawscron, aws-cron-parser) work in UTC
only and are thinly maintained, croniter rejects the six-field form, and the DST handling in
the schedule's timezone is the part that matters. The local stack's Scheduler firer and
`jobkit_tools.testing` fire schedules with it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobkit.errors import InvalidScheduleError


class Expression(Protocol):
    """When a schedule fires: the first occurrence strictly after a moment (None: never)."""

    @property
    def one_time(self) -> bool: ...

    def next_after(self, after: datetime) -> datetime | None: ...


def zone(name: str | None) -> ZoneInfo:
    """The IANA timezone of that name (None: UTC), or a clear error.

    An empty name is an error, not UTC: Scheduler refuses an empty
    `ScheduleExpressionTimezone`, so accepting it here would only move the failure to AWS.
    """
    if name is None:
        return ZoneInfo("UTC")
    if not name.strip():
        raise InvalidScheduleError(
            "the timezone is empty: give an IANA name such as 'Europe/Berlin' (or 'UTC')"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidScheduleError(
            f"unknown timezone {name!r} (use an IANA name such as 'Europe/Berlin')"
        ) from error


@dataclass(frozen=True)
class At:
    """`at(yyyy-mm-ddThh:mm:ss)`: one moment, a wall-clock time in the schedule's timezone."""

    moment: datetime  # UTC
    one_time: bool = True

    def next_after(self, after: datetime) -> datetime | None:
        return self.moment if self.moment > after else None


@dataclass(frozen=True)
class Rate:
    """`rate(N unit)`: every period from an anchor (the creation date or StartDate)."""

    period: timedelta
    anchor: datetime
    one_time: bool = False

    def next_after(self, after: datetime) -> datetime | None:
        if after < self.anchor:
            return self.anchor
        periods = (after - self.anchor) // self.period + 1
        return self.anchor + periods * self.period


_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
# field name, lowest, highest, names
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)
_SIX_FIELDS = "minutes hours day-of-month month day-of-week year"
_LAST_YEAR = _CRON_FIELDS[5][2]  # AWS's cron years end there

DayRule = Callable[[date], bool]


def _value(token: str, index: int, text: str) -> int:
    name, low, high, names = _CRON_FIELDS[index]
    token = token.upper()
    if token in names:
        return names[token]
    if not token.isdigit():
        raise InvalidScheduleError(f"cron {name} {text!r}: bad value {token!r}")
    number = int(token)
    if not low <= number <= high:
        raise InvalidScheduleError(f"cron {name} {number} is outside {low}-{high}")
    return number


def _cron_field(text: str, index: int) -> frozenset[int] | None:
    """One cron field -> the values it allows (None: `*`/`?`, any value)."""
    name, low, high, _ = _CRON_FIELDS[index]
    if text == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise InvalidScheduleError(f"cron: '?' is only valid in the day fields, not {name}")
        return None
    if text == "*":
        return None
    allowed: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidScheduleError(f"cron {name} {text!r}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = _value(start, index, text), _value(end, index, text)
        else:
            first = _value(base, index, text)
            last = high if step_text else first
        # A wrapping range such as FRI-MON goes round the end.
        span = (
            list(range(first, last + 1))
            if first <= last
            else [*range(first, high + 1), *range(low, last + 1)]
        )
        allowed.update(span[::step])
    return frozenset(allowed)


def _last_day(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _aws_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1  # Monday is 0 in Python, 2 in AWS


def _nearest_weekday(day: date, target: int) -> bool:
    """`NW`: the weekday (Mon-Fri) nearest the target day, not leaving the month."""
    target = min(target, _last_day(day))
    wanted = day.replace(day=target)
    if wanted.weekday() == 5:  # Saturday: the Friday before, or Monday if the 1st
        wanted = wanted - timedelta(days=1) if target > 1 else wanted + timedelta(days=2)
    elif wanted.weekday() == 6:  # Sunday: the Monday after, or Friday if the last day
        last = target == _last_day(day)
        wanted = wanted - timedelta(days=2) if last else wanted + timedelta(days=1)
    return day == wanted


def _day_of_month_rule(text: str) -> DayRule | None:
    """The specials of day-of-month: `L`, `LW`, `NW` (None: not a special)."""
    upper = text.upper()
    if upper == "L":
        return lambda day: day.day == _last_day(day)
    if upper == "LW":
        return lambda day: _nearest_weekday(day, _last_day(day))
    if match := re.fullmatch(r"(\d{1,2})W", upper):
        target = _value(match.group(1), 2, text)
        return lambda day: _nearest_weekday(day, target)
    if "L" in upper or "W" in upper:
        raise InvalidScheduleError(f"cron day-of-month {text!r}: use L, LW or <day>W alone")
    return None


def _day_of_week_rule(text: str) -> DayRule | None:
    """The specials of day-of-week: `<day>L` (the last of the month), `<day>#<n>` (the nth)."""
    upper = text.upper()
    if match := re.fullmatch(r"([A-Z]{3}|\d)L", upper):
        weekday = _value(match.group(1), 4, text)
        return lambda day: _aws_weekday(day) == weekday and day.day + 7 > _last_day(day)
    if match := re.fullmatch(r"([A-Z]{3}|\d)#(\d)", upper):
        weekday, nth = _value(match.group(1), 4, text), int(match.group(2))
        if not 1 <= nth <= 5:
            raise InvalidScheduleError(f"cron day-of-week {text!r}: # takes 1-5")
        return lambda day: _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == nth
    if upper == "L":
        return lambda day: _aws_weekday(day) == 7  # L alone is the last day of the week
    if "#" in upper or upper.endswith("L"):
        raise InvalidScheduleError(f"cron day-of-week {text!r}: use <day>L or <day>#<n> alone")
    return None


@dataclass(frozen=True)
class Cron:
    """`cron(minutes hours day-of-month month day-of-week year)` in a timezone."""

    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    months: frozenset[int] | None
    years: frozenset[int] | None
    day_rule: DayRule
    zone: ZoneInfo
    one_time: bool = False

    @classmethod
    def parse(cls, fields_text: str, tz: ZoneInfo) -> Cron:
        fields = fields_text.split()
        if len(fields) != 6:
            raise InvalidScheduleError(
                f"cron({fields_text}): AWS cron has 6 fields ({_SIX_FIELDS}), "
                f"got {len(fields)}; e.g. cron(0 2 * * ? *) for 02:00 every day"
            )
        dom_text, dow_text = fields[2], fields[4]
        if (dom_text == "?") == (dow_text == "?"):
            raise InvalidScheduleError(
                f"cron({fields_text}): exactly one of day-of-month and day-of-week "
                "must be '?' (e.g. cron(0 9 ? * MON-FRI *) or cron(0 9 1 * ? *))"
            )
        minutes, hours = _cron_field(fields[0], 0), _cron_field(fields[1], 1)
        months, years = _cron_field(fields[3], 3), _cron_field(fields[5], 5)
        rule = _day_of_month_rule(dom_text) or _day_of_week_rule(dow_text)
        if rule is None:
            days, weekdays = _cron_field(dom_text, 2), _cron_field(dow_text, 4)

            def rule(day: date) -> bool:
                return (days is None or day.day in days) and (
                    weekdays is None or _aws_weekday(day) in weekdays
                )

        return cls(minutes, hours, months, years, rule, tz)

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence after `after`, up to AWS's last cron year (None: never again).

        Whether a day rule matches some day of a month depends only on the month's shape (its
        number, leap year or not, the weekday of its 1st: 168 shapes), so a month whose shape
        matches no day is skipped whole: a cron that can never fire (30 February) is known to
        within milliseconds, over all the years up to 2199.
        """
        local = after.astimezone(self.zone)
        day = local.date()
        last_year = max(self.years) if self.years is not None else _LAST_YEAR
        minutes = sorted(self.minutes) if self.minutes is not None else range(60)
        hours = sorted(self.hours) if self.hours is not None else range(24)
        shapes: dict[tuple[int, bool, int], bool] = {}
        month_seen: tuple[int, int] | None = None
        while day.year <= last_year:
            if self.years is not None and day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if self.months is not None and day.month not in self.months:
                day = _next_month(day)
                continue
            if month_seen != (day.year, day.month):
                month_seen = (day.year, day.month)
                if not self._month_matches(day, shapes):
                    day = _next_month(day)
                    continue
            if self.day_rule(day):
                moment = self._first_on(day, hours, minutes, after)
                if moment is not None:
                    return moment
            day += timedelta(days=1)
        return None

    def _first_on(
        self, day: date, hours: Sequence[int], minutes: Sequence[int], after: datetime
    ) -> datetime | None:
        """The first of `day`'s times (its hours and minutes, in the zone) after `after`."""
        for hour in hours:
            for minute in minutes:
                wall = datetime(day.year, day.month, day.day, hour, minute)
                moment = wall.replace(tzinfo=self.zone).astimezone(UTC)
                if moment.astimezone(self.zone).replace(tzinfo=None) != wall:
                    continue  # skipped by a DST change
                if moment > after:
                    return moment
        return None

    def _month_matches(self, day: date, shapes: dict[tuple[int, bool, int], bool]) -> bool:
        """Whether the day rule matches any day of `day`'s month (cached by the month's shape)."""
        first = day.replace(day=1)
        shape = (day.month, calendar.isleap(day.year), first.weekday())
        found = shapes.get(shape)
        if found is None:
            found = shapes[shape] = any(
                self.day_rule(first + timedelta(days=i)) for i in range(_last_day(first))
            )
        return found


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_expression(
    expression: str, timezone: str | None = None, anchor: datetime | None = None
) -> Expression:
    """A ScheduleExpression (+ timezone; `anchor` is where a rate counts from) -> Expression.

    Raises InvalidScheduleError with what is wrong and an example of what is right.
    """
    tz = zone(timezone)
    text = expression.strip()
    if match := _AT.match(text):
        try:
            wall = datetime.fromisoformat(match.group(1))
        except ValueError as error:
            raise InvalidScheduleError(f"{expression}: {error}") from error
        return At(wall.replace(tzinfo=tz).astimezone(UTC))
    if match := _RATE.match(text):
        count, unit = int(match.group(1)), match.group(2)
        if count < 1:
            raise InvalidScheduleError(f"{expression}: the rate must be at least 1")
        if (count == 1) != (not unit.endswith("s")):
            raise InvalidScheduleError(
                f"{expression}: AWS wants the singular unit for 1 and the plural above "
                "(rate(1 hour), rate(2 hours))"
            )
        period = timedelta(seconds=count * _UNITS[unit.rstrip("s")])
        return Rate(period, anchor or datetime.now(UTC))
    if match := _CRON.match(text):
        return Cron.parse(match.group(1), tz)
    raise InvalidScheduleError(
        f"unsupported schedule expression {expression!r}: use cron(...) with AWS's six fields "
        f"({_SIX_FIELDS}), rate(N minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss)"
    )


def iso_utc(moment: datetime) -> str:
    """`2026-11-23T10:00:00Z`, the form of `<aws.scheduler.scheduled-time>`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
