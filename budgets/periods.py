"""Budget periods (SPEC 2.2), all in UTC, as plain functions of a budget's definition.

Intervals are half-open `[start, end)`. The first and last periods are clipped to the budget's
own `[start_date, end_date)`; a period row is keyed by its clipped start.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
QUARTERLY = "quarterly"
YEARLY = "yearly"
MONTHLY_ROLLING = "monthly_rolling"
CUSTOM = "custom"
PERIOD_TYPES = (DAILY, WEEKLY, MONTHLY, QUARTERLY, YEARLY, MONTHLY_ROLLING, CUSTOM)

ROLLING_LENGTH = timedelta(days=30)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def _midnight(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(year: int, month: int) -> datetime:
    # month may run past 12: normalise.
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def natural_period(period_type: str, t: datetime, anchor: datetime) -> Period:
    """The unclipped period of `period_type` that contains `t` (`anchor`: the budget's start,
    which rolling periods count from)."""
    t = t.astimezone(UTC)
    if period_type == DAILY:
        start = _midnight(t)
        return Period(start, start + timedelta(days=1))
    if period_type == WEEKLY:
        start = _midnight(t) - timedelta(days=t.weekday())
        return Period(start, start + timedelta(days=7))
    if period_type == MONTHLY:
        return Period(_month_start(t.year, t.month), _month_start(t.year, t.month + 1))
    if period_type == QUARTERLY:
        first = 3 * ((t.month - 1) // 3) + 1
        return Period(_month_start(t.year, first), _month_start(t.year, first + 3))
    if period_type == YEARLY:
        return Period(datetime(t.year, 1, 1, tzinfo=UTC), datetime(t.year + 1, 1, 1, tzinfo=UTC))
    if period_type == MONTHLY_ROLLING:
        anchor = anchor.astimezone(UTC)
        count = (t - anchor) // ROLLING_LENGTH
        start = anchor + count * ROLLING_LENGTH
        return Period(start, start + ROLLING_LENGTH)
    raise ValueError(f"no natural period for {period_type!r}")


def period_at(
    period_type: str, start_date: datetime, end_date: datetime | None, t: datetime
) -> Period | None:
    """The budget's period containing `t`, clipped to its dates; None when it is not active."""
    if t < start_date or (end_date is not None and t >= end_date):
        return None
    if period_type == CUSTOM:
        if end_date is None:
            raise ValueError("a custom budget needs an end_date")
        return Period(start_date, end_date)
    natural = natural_period(period_type, t, start_date)
    start = max(natural.start, start_date)
    end = natural.end if end_date is None else min(natural.end, end_date)
    return Period(start, end)


def periods_between(
    period_type: str,
    start_date: datetime,
    end_date: datetime | None,
    until: datetime,
    limit: int = 100_000,
) -> Iterator[Period]:
    """Every period from the budget's first up to the one containing `until`, oldest first."""
    t = start_date
    for _ in range(limit):
        if t > until:
            return
        period = period_at(period_type, start_date, end_date, t)
        if period is None:
            return
        yield period
        t = period.end


def periods_back(
    period_type: str,
    start_date: datetime,
    end_date: datetime | None,
    until: datetime,
    limit: int,
) -> Iterator[Period]:
    """The period containing `until` and up to `limit - 1` before it, newest first."""
    if end_date is not None and until >= end_date:
        until = end_date - timedelta(microseconds=1)
    t = until
    for _ in range(limit):
        if t < start_date:
            return
        period = period_at(period_type, start_date, end_date, t)
        if period is None:
            return
        yield period
        t = period.start - timedelta(microseconds=1)


def default_start(period_type: str, now: datetime) -> datetime:
    """A budget created without `start_date` starts with the period that contains now (a
    monthly budget made on the 14th covers the whole month); a rolling one today at 00:00Z."""
    if period_type in (CUSTOM, MONTHLY_ROLLING):
        return _midnight(now)
    return natural_period(period_type, now, now).start
