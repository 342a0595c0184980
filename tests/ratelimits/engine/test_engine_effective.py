"""The effective limit of SPEC 3.3 as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ratelimits.engine.effective import (
    effective_limit,
    priority_multiplier,
    resolve,
    time_of_day_multiplier,
    usage_factor,
    validate_overrides,
)

# 2024-01-03 is a Wednesday (ISO weekday 3).
WED_10 = datetime(2024, 1, 3, 10, 30, tzinfo=UTC)
WED_20 = datetime(2024, 1, 3, 20, 0, tzinfo=UTC)
SAT_10 = datetime(2024, 1, 6, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [("critical", 2000), ("high", 1500), ("normal", 1000), (None, 1000), ("low", 500)],
)
def test_default_priority_multipliers(priority: str | None, expected: int):
    assert effective_limit(1000, priority=priority_multiplier(priority)) == expected


def test_policy_overrides_priority_multipliers():
    overrides = {"priority_multipliers": {"low": 0.25, "critical": "3"}}
    assert priority_multiplier("low", overrides) == Decimal("0.25")
    assert priority_multiplier("critical", overrides) == Decimal(3)
    assert priority_multiplier("high", overrides) == Decimal("1.5")


def test_unknown_priority_is_refused():
    with pytest.raises(ValueError, match="unknown priority"):
        priority_multiplier("urgent")


def test_floor_is_exact_in_decimal():
    # In floats 1000 * 1.5 * 0.7 is 1049.9999999999998.
    assert effective_limit(1000, priority=Decimal("1.5"), time_of_day=Decimal("0.7")) == 1050
    assert effective_limit(3, priority=Decimal("0.5")) == 1
    assert effective_limit(1, priority=Decimal("0.5")) == 1  # at least 1


def test_emergency_extra_is_added_after_the_floor():
    assert effective_limit(10, priority=Decimal("0.5"), emergency_extra=7) == 12


def test_time_of_day_object_form_with_default_peak_hours():
    overrides = {"time_of_day_adjustments": {"peak_multiplier": 0.5, "off_peak_multiplier": 2.0}}
    assert time_of_day_multiplier(overrides, WED_10) == Decimal("0.5")
    assert time_of_day_multiplier(overrides, WED_20) == Decimal("2.0")
    assert time_of_day_multiplier(overrides, datetime(2024, 1, 3, 9, tzinfo=UTC)) == Decimal("0.5")
    assert time_of_day_multiplier(overrides, datetime(2024, 1, 3, 18, tzinfo=UTC)) == Decimal("2.0")


def test_time_of_day_object_form_with_wrapping_peak_hours():
    overrides = {
        "time_of_day_adjustments": {
            "peak_hours": {"start": 22, "end": 6},
            "peak_multiplier": 0.5,
            "off_peak_multiplier": 1.5,
        }
    }
    assert time_of_day_multiplier(overrides, datetime(2024, 1, 3, 23, tzinfo=UTC)) == Decimal("0.5")
    assert time_of_day_multiplier(overrides, datetime(2024, 1, 3, 5, tzinfo=UTC)) == Decimal("0.5")
    assert time_of_day_multiplier(overrides, WED_10) == Decimal("1.5")


def test_time_of_day_uses_utc_hours_whatever_the_instants_zone():
    from datetime import timedelta, timezone

    overrides = {"time_of_day_adjustments": {"peak_multiplier": 0.5, "off_peak_multiplier": 2.0}}
    # 20:00 at UTC+10 is 10:00 UTC: peak.
    local = datetime(2024, 1, 3, 20, 0, tzinfo=timezone(timedelta(hours=10)))
    assert time_of_day_multiplier(overrides, local) == Decimal("0.5")


def test_time_of_day_list_form_with_days_and_first_match():
    overrides = {
        "time_of_day_adjustments": [
            {"start_hour": 9, "end_hour": 17, "multiplier": 0.5, "days": [1, 2, 3, 4, 5]},
            {"start_hour": 0, "end_hour": 24, "multiplier": 3},
        ]
    }
    assert time_of_day_multiplier(overrides, WED_10) == Decimal("0.5")
    assert time_of_day_multiplier(overrides, SAT_10) == Decimal(3)
    assert time_of_day_multiplier(overrides, WED_20) == Decimal(3)


def test_time_of_day_list_form_without_a_matching_entry_is_one():
    overrides = {"time_of_day_adjustments": [{"start_hour": 1, "end_hour": 2, "multiplier": 9}]}
    assert time_of_day_multiplier(overrides, WED_10) == Decimal(1)


@pytest.mark.parametrize(
    ("used", "expected"),
    [(900, Decimal("1.25")), (800, Decimal("1.25")), (500, Decimal(1)), (100, Decimal("0.75"))],
)
def test_usage_factor_compares_use_over_the_lookback_with_the_limit(used: int, expected: Decimal):
    config = {"enabled": True, "lookback_seconds": 3600}
    assert usage_factor(config, used=used, limit_value=1000, window_seconds=3600) == expected


def test_usage_factor_scales_the_lookback_and_is_clamped():
    config = {
        "enabled": True,
        "lookback_seconds": 7200,
        "high_threshold": 0.9,
        "scale_up": 5,
        "low_threshold": 0.1,
        "scale_down": 0.1,
    }
    # 2 windows of 100 allowed = 200; 190 used is 95 %.
    assert usage_factor(config, used=190, limit_value=100, window_seconds=3600) == Decimal("2.0")
    assert usage_factor(config, used=10, limit_value=100, window_seconds=3600) == Decimal("0.5")
    assert usage_factor({"enabled": False}, used=0, limit_value=1, window_seconds=1) == 1


def test_resolve_combines_every_factor_and_keeps_the_drain_policy_wide():
    overrides = {
        "time_of_day_adjustments": {"peak_multiplier": 0.5, "off_peak_multiplier": 2.0},
        "emergency_capacity": 10,
    }
    eff = resolve(
        1000,
        overrides,
        priority="critical",
        at=WED_10,
        usage=Decimal("1.25"),
        throttle=Decimal("0.4"),
        temporary_extra=5,
    )
    # floor(1000 x 2 x 0.5 x 1.25 x 0.4) + 10 + 5
    assert eff.limit == 515
    assert eff.drain_limit == 250
    assert eff.emergency_extra == 15


def test_validate_overrides_accepts_both_forms_and_names_problems():
    assert validate_overrides(None) == {}
    assert (
        validate_overrides(
            {
                "priority_multipliers": {"low": 0.1},
                "time_of_day_adjustments": [
                    {"start_hour": 0, "end_hour": 24, "multiplier": 1.5, "days": [6, 7]}
                ],
                "usage_pattern_analysis": {"enabled": True, "lookback_seconds": 60},
                "emergency_capacity": 3,
            }
        )
        == {}
    )
    errors = validate_overrides(
        {
            "priority_multipliers": {"urgent": 2, "low": -1},
            "time_of_day_adjustments": [{"start_hour": 25, "end_hour": 0, "days": [8]}],
            "emergency_capacity": -1,
            "surprise": 1,
        }
    )
    assert set(errors) == {
        "overrides.priority_multipliers.urgent",
        "overrides.priority_multipliers.low",
        "overrides.time_of_day_adjustments[0].start_hour",
        "overrides.time_of_day_adjustments[0].end_hour",
        "overrides.time_of_day_adjustments[0].multiplier",
        "overrides.time_of_day_adjustments[0].days",
        "overrides.emergency_capacity",
        "overrides.surprise",
    }
