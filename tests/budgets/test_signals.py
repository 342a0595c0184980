"""Thresholds (SPEC 2.5), forecast (SPEC 2.6), reconciliation (SPEC 4.5) and the throttle
factor published to the rate-limit engine."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgets import selectors, services, tasks
from budgets.models import BudgetPeriod, BudgetSignal
from events.models import Alert, OutboxEvent
from tests.budgets.conftest import check, make_budget

pytestmark = pytest.mark.django_db

D = Decimal
TENANT = "t-acme"
NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)


def _events(event_type):
    return [
        json.loads(e.body)["payload"] for e in OutboxEvent.objects.filter(event_type=event_type)
    ]


def test_each_threshold_fires_once_per_period(frozen):
    budget = make_budget("100", action="soft_limit")
    check("79")
    assert _events("budget_threshold_exceeded") == []
    check("1")  # exactly 80 %
    check("5")
    check("5")  # 90 %
    check("20")  # 110 %: the 100 % threshold
    check("20")
    payloads = _events("budget_threshold_exceeded")
    assert sorted(p["threshold"] for p in payloads) == [
        "critical_90",
        "exhausted_100",
        "warning_80",
    ]
    warning = next(p for p in payloads if p["threshold"] == "warning_80")
    assert warning["budget_id"] == str(budget.pk)
    assert D(str(warning["utilization_ratio"])) == D("0.8")
    assert warning["enforcement_action"] == "soft_limit"
    alerts = Alert.objects.filter(alert_type="budget_threshold_exceeded")
    assert alerts.count() == 3
    assert {a.occurrences for a in alerts} == {1}
    assert {a.severity for a in alerts} == {"warning", "critical"}
    assert BudgetSignal.objects.count() == 3


def test_one_check_crossing_several_thresholds_fires_each(frozen):
    make_budget("100", action="soft_limit")
    check("150")
    assert len(_events("budget_threshold_exceeded")) == 3


def test_disabled_thresholds_do_not_fire(frozen):
    make_budget(
        "100",
        action="soft_limit",
        thresholds={"warning_80": False, "critical_90": True, "exhausted_100": False},
    )
    check("150")
    assert [p["threshold"] for p in _events("budget_threshold_exceeded")] == ["critical_90"]


def test_a_new_period_fires_again(frozen):
    make_budget("100", action="soft_limit")
    check("85")
    frozen(datetime(2024, 4, 1, tzinfo=UTC))
    check("85")
    assert len(_events("budget_threshold_exceeded")) == 2
    assert Alert.objects.filter(alert_type="budget_threshold_exceeded").count() == 2


def test_release_and_recrossing_does_not_fire_twice(frozen):
    make_budget("100", action="soft_limit")
    held = check("85")
    services.release_reservation(tenant_id=TENANT, reservation_id=held["reservation_id"])
    check("85")
    assert len(_events("budget_threshold_exceeded")) == 1


def test_recorded_spending_crosses_thresholds_too(frozen):
    make_budget("100")
    services.apply_spending(tenant_id=TENANT, amount=D("95"), currency="USD", record_id="r")
    assert sorted(p["threshold"] for p in _events("budget_threshold_exceeded")) == [
        "critical_90",
        "warning_80",
    ]


# --- Forecast -------------------------------------------------------------------------------


def _spend(amount, at, record):
    services.apply_spending(
        tenant_id=TENANT, amount=D(str(amount)), currency="USD", record_id=record, at=at
    )


def test_forecast_is_spent_plus_rate_times_days_left(frozen):
    budget = make_budget("1000")
    # March: 31 days. At the 15th 12:00 the window is 7 days; 70 spent in it → 10 per day.
    _spend(50, datetime(2024, 3, 2, tzinfo=UTC), "old")
    _spend(70, datetime(2024, 3, 10, tzinfo=UTC), "recent")
    period = selectors.current_period_of(budget, NOW)
    row = BudgetPeriod.objects.get(budget=budget)
    forecast = selectors.forecast_amount(budget, period, row, NOW)
    days_left = D("16.5")
    assert forecast == D(120) + D(10) * days_left


def test_forecast_window_is_the_elapsed_part_of_a_young_period(frozen):
    budget = make_budget("1000", period="daily")
    frozen(datetime(2024, 3, 15, 6, tzinfo=UTC))
    _spend(12, datetime(2024, 3, 15, 1, tzinfo=UTC), "r")
    at = datetime(2024, 3, 15, 6, tzinfo=UTC)
    period = selectors.current_period_of(budget, at)
    row = BudgetPeriod.objects.get(budget=budget)
    # 12 over 6 hours → 2 per hour, 18 hours left → 36 more.
    assert selectors.forecast_amount(budget, period, row, at) == D(48)


def test_forecast_exceeded_is_emitted_once_per_period(frozen):
    budget = make_budget("100", action="soft_limit")
    _spend(60, datetime(2024, 3, 12, tzinfo=UTC), "r1")
    assert tasks.check_forecasts() == 1
    assert tasks.check_forecasts() == 0
    payloads = _events("budget_forecast_exceeded")
    assert len(payloads) == 1
    assert payloads[0]["budget_id"] == str(budget.pk)
    assert D(str(payloads[0]["budget_amount"])) == D(100)
    assert D(str(payloads[0]["forecast_amount"])) > D(100)
    assert Alert.objects.filter(alert_type="budget_forecast_exceeded").count() == 1


def test_no_forecast_event_when_on_track(frozen):
    make_budget("10000")
    _spend(60, datetime(2024, 3, 12, tzinfo=UTC), "r1")
    assert tasks.check_forecasts() == 0


# --- Reconciliation -------------------------------------------------------------------------


def test_reconcile_finds_repairs_and_alerts_on_drift(frozen):
    budget = make_budget("100")
    check("10")
    _spend(5, NOW, "r1")
    assert tasks.reconcile()["drifted"] == 0
    BudgetPeriod.objects.filter(budget=budget).update(spent_amount=D(99))
    report = tasks.reconcile()
    assert report["drifted"] == 1
    assert report["drift"] == D(94)
    row = BudgetPeriod.objects.get(budget=budget)
    assert (row.spent_amount, row.reserved_amount) == (D(5), D(10))
    alert = Alert.objects.get(alert_type="reconciliation_drift")
    assert alert.resource_id == str(budget.pk)
    assert tasks.reconcile()["drifted"] == 0


# --- The throttle factor for the rate-limit engine ------------------------------------------


def test_throttle_factor_is_published_for_the_budget_scope(frozen):
    make_budget("100", kind="project", target="p1", action="throttle")
    make_budget("100", kind="project", target="p2", action="hard_stop")
    assert selectors.throttle_factor(TENANT, "project", "p1") is None
    check("90", operation_context={"project_id": "p1"})
    assert selectors.throttle_factor(TENANT, "project", "p1") == D("0.55")
    assert selectors.throttle_factor(TENANT, "project", "p2") is None
    assert selectors.throttle_factor(TENANT, "tenant", TENANT) is None
    assert selectors.rate_limit_throttle_factors(tenant_id=TENANT) == [("project", "p1", D("0.55"))]


def test_a_tenant_throttle_budget_applies_to_every_scope(frozen):
    make_budget("100", action="throttle")
    check("100")
    assert selectors.throttle_factor(TENANT, "feature", "anything") == D("0.1")
    assert selectors.throttle_factor(TENANT, "tenant", TENANT) == D("0.1")


def test_throttle_factor_follows_utilization_down(frozen):
    make_budget("100", kind="user", target="u1", action="throttle")
    held = check("95", operation_context={"user_id": "u1"})
    assert selectors.throttle_factor(TENANT, "user", "u1") == D("0.325")
    services.release_reservation(tenant_id=TENANT, reservation_id=held["reservation_id"])
    assert selectors.throttle_factor(TENANT, "user", "u1") is None


def test_throttle_factor_resets_with_a_new_period(frozen):
    make_budget("100", action="throttle")
    check("100")
    assert selectors.throttle_factor(TENANT, "tenant", TENANT) == D("0.1")
    later = NOW + timedelta(days=30)
    frozen(later)
    assert selectors.throttle_factor(TENANT, "tenant", TENANT) is None


def test_the_demo_seeder_is_registered_and_safe_to_run_twice(frozen):
    from budgeting_site.platform import demo
    from budgets.demo import seed
    from budgets.models import Budget

    assert seed in demo.seeders()
    seed("demo-t")
    seed("demo-t")
    budgets = Budget.objects.filter(tenant_id="demo-t")
    assert budgets.count() == 5
    search = budgets.get(allocated_to_id="proj-search")
    # The demo records costs from 60 days back; March so far, counted once (not twice).
    row = BudgetPeriod.objects.get(budget=search, period_start=datetime(2024, 3, 1, tzinfo=UTC))
    assert row.spent_amount == D("1188.69")
