"""Periods (SPEC 2.2): UTC boundaries at exact instants, clipping, and checks that land in the
right period row under a controlled clock."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgets.models import BudgetPeriod
from budgets.periods import Period, default_start, natural_period, period_at, periods_between
from tests.budgets.conftest import check, make_budget

D = Decimal
TICK = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


ANCHOR = utc(2020, 1, 1)


@pytest.mark.parametrize(
    ("period_type", "t", "start", "end"),
    [
        ("daily", utc(2024, 2, 29, 23, 59, 59, 999999), utc(2024, 2, 29), utc(2024, 3, 1)),
        ("daily", utc(2024, 3, 1), utc(2024, 3, 1), utc(2024, 3, 2)),
        # Leap day: February 2024 has 29 days; 2023 has 28.
        ("monthly", utc(2024, 2, 29, 12), utc(2024, 2, 1), utc(2024, 3, 1)),
        ("monthly", utc(2023, 2, 28, 23, 59, 59, 999999), utc(2023, 2, 1), utc(2023, 3, 1)),
        ("monthly", utc(2024, 1, 31, 23, 59, 59, 999999), utc(2024, 1, 1), utc(2024, 2, 1)),
        ("monthly", utc(2024, 2, 1), utc(2024, 2, 1), utc(2024, 3, 1)),
        ("monthly", utc(2024, 12, 31, 23), utc(2024, 12, 1), utc(2025, 1, 1)),
        # ISO week 53 of 2020 runs Mon 28 Dec 2020 .. Mon 4 Jan 2021.
        ("weekly", utc(2020, 12, 31), utc(2020, 12, 28), utc(2021, 1, 4)),
        ("weekly", utc(2021, 1, 3, 23, 59, 59, 999999), utc(2020, 12, 28), utc(2021, 1, 4)),
        ("weekly", utc(2021, 1, 4), utc(2021, 1, 4), utc(2021, 1, 11)),
        ("quarterly", utc(2024, 3, 31, 23, 59, 59, 999999), utc(2024, 1, 1), utc(2024, 4, 1)),
        ("quarterly", utc(2024, 4, 1), utc(2024, 4, 1), utc(2024, 7, 1)),
        ("quarterly", utc(2024, 11, 15), utc(2024, 10, 1), utc(2025, 1, 1)),
        ("yearly", utc(2024, 12, 31, 23, 59, 59, 999999), utc(2024, 1, 1), utc(2025, 1, 1)),
        ("monthly_rolling", utc(2020, 1, 30, 23), utc(2020, 1, 1), utc(2020, 1, 31)),
        ("monthly_rolling", utc(2020, 1, 31), utc(2020, 1, 31), utc(2020, 3, 1)),
        ("monthly_rolling", utc(2020, 3, 1), utc(2020, 3, 1), utc(2020, 3, 31)),
    ],
)
def test_natural_periods_at_exact_instants(period_type, t, start, end):
    assert natural_period(period_type, t, ANCHOR) == Period(start, end)


def test_first_and_last_periods_are_clipped_to_the_budget_dates():
    start, end = utc(2024, 1, 15, 6), utc(2024, 3, 10)
    assert period_at("monthly", start, end, utc(2024, 1, 20)) == Period(start, utc(2024, 2, 1))
    assert period_at("monthly", start, end, utc(2024, 2, 20)) == Period(
        utc(2024, 2, 1), utc(2024, 3, 1)
    )
    assert period_at("monthly", start, end, utc(2024, 3, 9)) == Period(utc(2024, 3, 1), end)
    assert period_at("monthly", start, end, end) is None
    assert period_at("monthly", start, end, start - TICK) is None
    assert [p.start for p in periods_between("monthly", start, end, utc(2030, 1, 1))] == [
        start,
        utc(2024, 2, 1),
        utc(2024, 3, 1),
    ]


def test_custom_period_is_the_whole_range_without_reset():
    start, end = utc(2024, 1, 15), utc(2024, 6, 1)
    assert period_at("custom", start, end, utc(2024, 5, 31)) == Period(start, end)
    assert period_at("custom", start, end, end) is None


def test_rolling_periods_count_30_days_from_the_start():
    start = utc(2024, 1, 10, 8)
    assert period_at("monthly_rolling", start, None, utc(2024, 2, 9, 7, 59)) == Period(
        start, utc(2024, 2, 9, 8)
    )
    assert period_at("monthly_rolling", start, None, utc(2024, 2, 9, 8)) == Period(
        utc(2024, 2, 9, 8), utc(2024, 3, 10, 8)
    )


def test_default_start_is_the_current_period():
    now = utc(2024, 5, 14, 10, 30)
    assert default_start("monthly", now) == utc(2024, 5, 1)
    assert default_start("quarterly", now) == utc(2024, 4, 1)
    assert default_start("weekly", now) == utc(2024, 5, 13)
    assert default_start("monthly_rolling", now) == utc(2024, 5, 14)


# --- With the controlled clock: spending belongs to the period containing the instant ------


def _rows(budget):
    return {
        (row.period_start, row.period_end): row.reserved_amount
        for row in BudgetPeriod.objects.filter(budget=budget)
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("period_type", "last_instant", "first_of_next"),
    [
        ("monthly", utc(2024, 1, 31, 23, 59, 59, 999999), utc(2024, 2, 1)),
        ("monthly", utc(2024, 2, 29, 23, 59, 59, 999999), utc(2024, 3, 1)),
        ("daily", utc(2024, 2, 28, 23, 59, 59, 999999), utc(2024, 2, 29)),
        ("weekly", utc(2021, 1, 3, 23, 59, 59, 999999), utc(2021, 1, 4)),
        ("quarterly", utc(2024, 3, 31, 23, 59, 59, 999999), utc(2024, 4, 1)),
        ("yearly", utc(2024, 12, 31, 23, 59, 59, 999999), utc(2025, 1, 1)),
    ],
)
def test_a_check_at_the_boundary_starts_a_fresh_period(
    frozen, period_type, last_instant, first_of_next
):
    budget = make_budget("100", period=period_type, start=utc(2020, 1, 1))
    frozen(last_instant)
    assert check("100")["allowed"] is True
    assert check("1")["allowed"] is False
    frozen(first_of_next)
    fresh = check("100")
    assert fresh["allowed"] is True
    assert fresh["remaining_budget"] == D(0)
    rows = _rows(budget)
    assert len(rows) == 2
    assert {start for start, _ in rows} == {
        natural_period(period_type, last_instant, ANCHOR).start,
        first_of_next,
    }
    assert set(rows.values()) == {D(100)}


@pytest.mark.django_db
def test_budget_is_inactive_outside_its_dates(frozen):
    make_budget("100", start=utc(2024, 3, 16), end=utc(2024, 4, 1))
    frozen(utc(2024, 3, 15, 23, 59, 59, 999999))
    assert check("500")["budget_id"] is None
    frozen(utc(2024, 3, 16))
    assert check("500")["allowed"] is False
    frozen(utc(2024, 4, 1))
    assert check("500")["budget_id"] is None


@pytest.mark.django_db
def test_clipped_first_period_row_starts_at_the_budget_start(frozen):
    budget = make_budget("100", start=utc(2024, 3, 10, 12))
    frozen(utc(2024, 3, 20))
    check("10")
    assert list(_rows(budget)) == [(utc(2024, 3, 10, 12), utc(2024, 4, 1))]
