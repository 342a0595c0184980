"""Holds (SPEC 2.4): commit, release, extend, expiry (sweep and lazy), settlement by cost
records, and spending without a hold."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgets import services, tasks
from budgets.exceptions import InvalidHoldTransition, ReservationNotFound
from budgets.models import Reservation, SpendEntry
from receipts.models import Receipt
from tests.budgets.conftest import check, counters, make_budget

pytestmark = pytest.mark.django_db

D = Decimal
NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
TENANT = "t-acme"


def _commit(reservation_id, actual, **kw):
    return services.commit_reservation(
        tenant_id=TENANT, reservation_id=reservation_id, actual_cost=D(str(actual)), **kw
    )


def test_commit_replaces_the_estimate_with_the_actual_cost(frozen):
    budget = make_budget("100")
    held = check("40")
    reservation, receipt_id = _commit(held["reservation_id"], "35.5")
    assert reservation.status == "committed"
    assert reservation.actual_cost == D("35.5")
    assert counters(budget) == (D("35.5"), D(0))
    receipt = Receipt.objects.get(receipt_id=receipt_id)
    assert receipt.gate_id == "budget-check"
    assert json.loads(receipt.canonical)["inputs"]["operation"] == "committed"


def test_actual_cost_may_go_past_a_hard_stop_amount(frozen):
    budget = make_budget("100")
    held = check("90")
    _commit(held["reservation_id"], "130")
    assert counters(budget) == (D(130), D(0))
    assert check("1")["allowed"] is False


def test_release_frees_the_hold(frozen):
    budget = make_budget("100")
    held = check("60")
    reservation, _ = services.release_reservation(
        tenant_id=TENANT, reservation_id=held["reservation_id"]
    )
    assert reservation.status == "released"
    assert counters(budget) == (D(0), D(0))
    assert check("100")["allowed"] is True


def test_extend_moves_the_expiry_from_now(frozen):
    make_budget("100")
    held = check("10", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=30))
    reservation, _ = services.extend_reservation(
        tenant_id=TENANT, reservation_id=held["reservation_id"], hold_ttl_seconds=600
    )
    assert reservation.expires_at == NOW + timedelta(seconds=630)
    frozen(NOW + timedelta(seconds=300))
    assert services.expire_overdue(at=NOW + timedelta(seconds=300)) == 0


def test_settled_holds_cannot_move_again(frozen):
    budget = make_budget("100")
    held = check("10")
    _commit(held["reservation_id"], "10")
    with pytest.raises(InvalidHoldTransition):
        services.release_reservation(tenant_id=TENANT, reservation_id=held["reservation_id"])
    with pytest.raises(InvalidHoldTransition):
        _commit(held["reservation_id"], "5")
    with pytest.raises(InvalidHoldTransition):
        services.extend_reservation(
            tenant_id=TENANT, reservation_id=held["reservation_id"], hold_ttl_seconds=60
        )
    assert counters(budget) == (D(10), D(0))


def test_a_foreign_reservation_is_not_found(frozen):
    make_budget("100")
    held = check("10")
    with pytest.raises(ReservationNotFound):
        services.release_reservation(tenant_id="t-globex", reservation_id=held["reservation_id"])


def test_expiry_run_twice_commits_once(frozen):
    budget = make_budget("100")
    held = check("25", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=61))
    assert tasks.expire_holds() == 1
    assert tasks.expire_holds() == 0
    assert services.expire_reservation(reservation_id=held["reservation_id"]) is False
    reservation = Reservation.objects.get(pk=held["reservation_id"])
    assert (reservation.status, reservation.expiry_outcome) == ("expired", "committed")
    assert counters(budget) == (D(25), D(0))
    assert SpendEntry.objects.filter(kind="hold_expiry").count() == 1
    expired_receipts = [
        r
        for r in Receipt.objects.filter(gate_id="budget-check")
        if json.loads(r.canonical)["inputs"].get("operation") == "expired"
    ]
    assert len(expired_receipts) == 1


def test_a_hold_is_not_expired_before_its_time(frozen):
    budget = make_budget("100")
    check("25", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=60) - timedelta(microseconds=1))
    assert tasks.expire_holds() == 0
    assert counters(budget) == (D(0), D(25))


def test_expiry_releases_when_configured(frozen, settings):
    settings.BUDGET_HOLD_EXPIRY = "release"
    budget = make_budget("100")
    check("25", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=61))
    assert tasks.expire_holds() == 1
    assert counters(budget) == (D(0), D(0))
    assert Reservation.objects.get().expiry_outcome == "released"


def test_a_check_expires_the_overdue_holds_it_meets(frozen, settings):
    settings.BUDGET_HOLD_EXPIRY = "release"
    budget = make_budget("100")
    check("80", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=61))
    result = check("80")
    assert result["allowed"] is True
    assert counters(budget) == (D(0), D(80))


def test_commit_after_expiry_is_a_conflict(frozen):
    make_budget("100")
    held = check("25", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=61))
    with pytest.raises(InvalidHoldTransition):
        _commit(held["reservation_id"], "20")


# --- Settlement by cost records -------------------------------------------------------------


def test_settle_hold_commits_an_open_hold_once(frozen):
    budget = make_budget("100")
    held = check("40")
    first = services.settle_hold(
        tenant_id=TENANT,
        reservation_id=held["reservation_id"],
        actual_cost=D("42"),
        currency="USD",
        record_id="rec-1",
    )
    assert first.outcome == "committed"
    assert first.budget_ids == [budget.pk]
    again = services.settle_hold(
        tenant_id=TENANT,
        reservation_id=held["reservation_id"],
        actual_cost=D("42"),
        currency="USD",
        record_id="rec-1",
    )
    assert again.outcome == "already_settled"
    assert counters(budget) == (D(42), D(0))


def test_a_late_record_replaces_the_committed_estimate_once(frozen):
    budget = make_budget("100")
    held = check("40", hold_ttl_seconds=60)
    frozen(NOW + timedelta(seconds=61))
    tasks.expire_holds()
    assert counters(budget) == (D(40), D(0))
    late = services.settle_hold(
        tenant_id=TENANT,
        reservation_id=held["reservation_id"],
        actual_cost=D("33"),
        record_id="rec-late",
    )
    assert late.outcome == "late_settled"
    assert counters(budget) == (D(33), D(0))
    twice = services.settle_hold(
        tenant_id=TENANT,
        reservation_id=held["reservation_id"],
        actual_cost=D("50"),
        record_id="rec-late-2",
    )
    assert twice.outcome == "already_settled"
    assert counters(budget) == (D(33), D(0))


def test_a_late_record_adds_to_a_released_hold(frozen):
    budget = make_budget("100")
    held = check("40")
    services.release_reservation(tenant_id=TENANT, reservation_id=held["reservation_id"])
    late = services.settle_hold(
        tenant_id=TENANT, reservation_id=held["reservation_id"], actual_cost=D("12")
    )
    assert late.outcome == "late_settled"
    assert counters(budget) == (D(12), D(0))


def test_settling_an_unknown_reservation_raises_not_found(frozen):
    import uuid

    with pytest.raises(ReservationNotFound):
        services.settle_hold(tenant_id=TENANT, reservation_id=uuid.uuid4(), actual_cost=D(1))


# --- Spending without a hold ----------------------------------------------------------------


def test_spending_counts_toward_every_budget_it_matches(frozen):
    tenant = make_budget("1000")
    project = make_budget("100", kind="project", target="p1")
    feature = make_budget("100", kind="feature", target="f1")
    other = make_budget("100", kind="project", target="p2")
    changed = services.apply_spending(
        tenant_id=TENANT,
        amount=D("30"),
        currency="USD",
        attributed_to_type="project",
        attributed_to_id="p1",
        operation_context={"feature_id": "f1"},
        record_id="rec-1",
        at=NOW,
    )
    assert set(changed) == {tenant.pk, project.pk, feature.pk}
    assert counters(tenant) == (D(30), D(0))
    assert counters(project) == (D(30), D(0))
    assert counters(feature) == (D(30), D(0))
    assert counters(other) == (D(0), D(0))


def test_spending_is_idempotent_per_record(frozen):
    budget = make_budget("100")
    for _ in range(2):
        services.apply_spending(
            tenant_id=TENANT, amount=D("5"), currency="USD", record_id="rec-1", timestamp=NOW
        )
    assert counters(budget) == (D(5), D(0))


def test_recorded_spending_may_exceed_the_amount(frozen):
    budget = make_budget("100")
    services.apply_spending(tenant_id=TENANT, amount=D("250"), currency="USD", record_id="r")
    assert counters(budget) == (D(250), D(0))


def test_spending_lands_in_the_period_of_its_timestamp(frozen):
    budget = make_budget("100")
    services.apply_spending(
        tenant_id=TENANT,
        amount=D("7"),
        currency="USD",
        record_id="old",
        at=datetime(2024, 2, 10, tzinfo=UTC),
    )
    assert check("100")["allowed"] is True  # March is untouched
    from budgets.models import BudgetPeriod

    rows = {
        r.period_start.month: (r.spent_amount, r.reserved_amount)
        for r in BudgetPeriod.objects.filter(budget=budget)
    }
    assert rows == {2: (D(7), D(0)), 3: (D(0), D(100))}


def test_reversal_takes_spending_back_out_but_never_below_zero(frozen):
    budget = make_budget("100")
    services.apply_spending(tenant_id=TENANT, amount=D("30"), currency="USD", record_id="r1")
    services.reverse_spending(tenant_id=TENANT, amount=D("30"), currency="USD", record_id="rv1")
    assert counters(budget) == (D(0), D(0))
    services.reverse_spending(tenant_id=TENANT, amount=D("30"), currency="USD", record_id="rv2")
    assert counters(budget) == (D(0), D(0))
    services.apply_spending(tenant_id=TENANT, amount=D("-5"), currency="USD", record_id="rv3")
    assert counters(budget) == (D(0), D(0))


def test_bulk_spending_in_one_transaction(frozen):
    from dataclasses import dataclass

    @dataclass
    class Spending:
        record_id: str
        amount: Decimal
        currency: str
        timestamp: datetime
        attributed_to_type: str
        attributed_to_id: str
        operation_context: dict

    tenant = make_budget("1000")
    project = make_budget("100", kind="project", target="p1")
    items = [
        Spending("a", D("1.5"), "USD", NOW, "project", "p1", {}),
        Spending("b", D("2.5"), "USD", NOW, "user", "u1", {"project_id": "p1"}),
        Spending("c", D("4"), "USD", NOW, "user", "u2", {}),
    ]
    services.apply_spending_bulk(tenant_id=TENANT, items=items)
    assert counters(project) == (D(4), D(0))
    assert counters(tenant) == (D(8), D(0))
