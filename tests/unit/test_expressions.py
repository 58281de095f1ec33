"""Scheduler expressions: AWS's forms are read, validated up front, and fire at the right time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobkit.errors import InvalidScheduleError
from jobkit.expressions import parse_expression


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Weekdays 09:00 in New York: Friday 10:00 EST -> Monday 09:00 EST (14:00 UTC)
        ("cron(0 9 ? * MON-FRI *)", datetime(2026, 11, 20, 15, 0), datetime(2026, 11, 23, 14, 0)),
        # Across the DST start (Sunday 2026-03-08): Monday 09:00 EDT is 13:00 UTC
        ("cron(0 9 ? * MON-FRI *)", datetime(2026, 3, 6, 15, 0), datetime(2026, 3, 9, 13, 0)),
        # Day-of-week numbers: 2-6 is MON-FRI
        ("cron(0 9 ? * 2-6 *)", datetime(2026, 11, 21, 0, 0), datetime(2026, 11, 23, 14, 0)),
        # Steps, and a minute that is already past
        ("cron(0/15 * * * ? *)", datetime(2026, 11, 23, 14, 0), datetime(2026, 11, 23, 14, 15)),
        # Lists of month names, a year
        ("cron(30 12 1 JAN,JUL ? 2027)", datetime(2026, 11, 23), datetime(2027, 1, 1, 17, 30)),
        # 02:30 does not exist on the DST start day: the next one is a day later
        ("cron(30 2 * * ? *)", datetime(2026, 3, 7, 12, 0), datetime(2026, 3, 9, 6, 30)),
        # L: the last day of the month (November has 30)
        ("cron(0 18 L * ? *)", datetime(2026, 11, 23), datetime(2026, 11, 30, 23, 0)),
        # LW: the last weekday of the month (2027-01-31 is a Sunday -> Friday the 29th)
        ("cron(0 9 LW * ? *)", datetime(2027, 1, 2), datetime(2027, 1, 29, 14, 0)),
        # 1W: the weekday nearest the 1st (2026-08-01 is a Saturday -> Monday the 3rd)
        ("cron(0 9 1W * ? *)", datetime(2026, 7, 5), datetime(2026, 8, 3, 13, 0)),
        # 2#1: the first Monday of the month
        ("cron(0 9 ? * 2#1 *)", datetime(2026, 11, 23), datetime(2026, 12, 7, 14, 0)),
        # 6L: the last Friday of the month
        ("cron(0 9 ? * 6L *)", datetime(2026, 11, 1), datetime(2026, 11, 27, 14, 0)),
    ],
)
def test_a_cron_expression_computes_its_next_fire_time(
    expression: str, after: datetime, expected: datetime
) -> None:
    # Given a cron expression in America/New_York
    parsed = parse_expression(expression, "America/New_York")

    # When asked for its next fire time after a moment (UTC)
    result = parsed.next_after(after.replace(tzinfo=UTC))

    # Then it is the right instant
    assert result == expected.replace(tzinfo=UTC)


def test_a_rate_counts_from_its_anchor_and_an_at_fires_once() -> None:
    # Given a rate anchored at noon and a one-time at() in Berlin
    anchor = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    rate = parse_expression("rate(5 minutes)", anchor=anchor)
    at = parse_expression("at(2026-11-23T10:00:00)", "Europe/Berlin")

    # Then the rate fires every five minutes from the anchor, and at() once, in Berlin time
    assert rate.next_after(anchor) == anchor + timedelta(minutes=5)
    assert rate.next_after(anchor + timedelta(minutes=7)) == anchor + timedelta(minutes=10)
    assert at.next_after(anchor - timedelta(days=1)) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert at.next_after(anchor) is None
    assert at.one_time and not rate.one_time


@pytest.mark.parametrize(
    ("expression", "timezone", "says"),
    [
        ("cron(0 9 * * MON *)", None, "exactly one of day-of-month and day-of-week"),
        ("cron(0 9 ? * ? *)", None, "exactly one of day-of-month and day-of-week"),
        ("cron(0 9 * *)", None, "6 fields"),
        ("cron(0 2 * * *)", None, "6 fields"),  # the five-field Unix form
        ("cron(61 9 * * ? *)", None, "minutes 61 is outside 0-59"),
        ("cron(0 9 W * ? *)", None, "day-of-month 'W'"),
        ("cron(0 9 ? * 2#7 *)", None, "# takes 1-5"),
        ("cron(0 9 ? FOO * ? *)", None, "6 fields"),
        ("cron(0 9 ? FOO * *)", None, "bad value"),
        ("cron(0 ? * * ? *)", None, "only valid in the day fields"),
        ("rate(1 hours)", None, "singular unit"),
        ("rate(0 minutes)", None, "at least 1"),
        ("every day", None, "unsupported schedule expression"),
        ("cron(0 9 * * ? *)", "Mars/Olympus", "unknown timezone"),
        ("at(2026-02-30T10:00:00)", None, "day is out of range"),
        ("cron(0 9 * * ? *)", "", "the timezone is empty"),  # Scheduler refuses "" too
        ("cron(0 9 * * ? *)", "   ", "the timezone is empty"),
    ],
)
def test_an_invalid_expression_is_a_clear_error(
    expression: str, timezone: str | None, says: str
) -> None:
    # When an expression AWS would reject is parsed
    with pytest.raises(InvalidScheduleError) as raised:
        parse_expression(expression, timezone)

    # Then the error says what is wrong
    assert says in str(raised.value)


def test_a_cron_is_looked_for_up_to_awss_last_year_and_a_never_firing_one_is_none() -> None:
    # Given crons that fire rarely (the fifth Monday of February: a leap year whose 1 February
    # is a Monday) or never (30 February; 31 April, June, September or November)
    rare = parse_expression("cron(0 9 ? FEB 2#5 *)")
    never = [parse_expression(e) for e in ("cron(0 2 30 2 ? *)", "cron(0 0 31 4,6,9,11 ? *)")]
    after = datetime(2073, 1, 1, tzinfo=UTC)

    # When asked for the next occurrence after 2073, and after the last one before 2200
    found = rare.next_after(after)
    past_the_last = rare.next_after(datetime(2196, 3, 1, tzinfo=UTC))

    # Then the rare one is found 39 years on (not cut off by a 30-year horizon), none is found
    # past AWS's last year (2199), and the impossible ones have none
    assert found == datetime(2112, 2, 29, 9, 0, tzinfo=UTC)
    assert past_the_last is None
    assert [cron.next_after(after) for cron in never] == [None, None]
