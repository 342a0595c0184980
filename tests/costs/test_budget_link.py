"""Recording through the budgets app: a record settles its hold or adds to the spending of the
budgets it matches; a reversal takes it back out (SPEC 2.4, 4.1)."""

import uuid

import pytest

from costs.models import CostRecord
from tests.costs.conftest import BASE

pytestmark = pytest.mark.django_db


@pytest.fixture
def budget(admin):
    r = admin.post(
        "/budget/v1/budgets",
        {
            "budget_name": "Project P1",
            "budget_amount": "100.00",
            "currency": "USD",
            "period_type": "monthly",
            "start_date": "2024-05-01",
            "allocated_to_type": "project",
            "allocated_to_id": "p1",
            "enforcement_action": "hard_stop",
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    return r.json()["budget_id"]


def period(admin, budget_id):
    return admin.get(f"/budget/v1/budgets/{budget_id}").json()["current_period"]


def test_a_record_adds_to_the_budgets_its_attribution_matches(svc, admin, budget):
    r = svc.post(
        f"{BASE}/record",
        {
            "resource_type": "llm",
            "cost_amount": "12.50",
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
        },
        format="json",
    )
    assert r.status_code == 202
    assert period(admin, budget)["spent_amount"] == 12.5
    svc.post(
        f"{BASE}/record",
        {
            "resource_type": "llm",
            "cost_amount": "1",
            "attributed_to_type": "project",
            "attributed_to_id": "p2",
        },
        format="json",
    )
    svc.post(
        f"{BASE}/record",
        {"resource_type": "llm", "cost_amount": "2", "operation_context": {"project_id": "p1"}},
        format="json",
    )
    assert period(admin, budget)["spent_amount"] == 14.5


def test_a_batch_applies_spending_once_even_when_posted_twice(svc, admin, budget):
    items = [
        {
            "idempotency_key": f"k{i}",
            "resource_type": "llm",
            "cost_amount": "10",
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
        }
        for i in range(3)
    ]
    svc.post(f"{BASE}/record/batch", {"records": items}, format="json")
    svc.post(f"{BASE}/record/batch", {"records": items}, format="json")
    assert period(admin, budget)["spent_amount"] == 30


def test_a_record_with_reservation_settles_the_hold(svc, admin, budget):
    check = svc.post(
        "/budget/v1/budgets/check",
        {
            "resource_type": "llm",
            "estimated_cost": "40",
            "allocated_to_type": "project",
            "allocated_to_id": "p1",
        },
        format="json",
    )
    assert check.status_code == 200, check.content
    reservation = check.json()["reservation_id"]
    assert period(admin, budget)["reserved_amount"] == 40
    r = svc.post(
        f"{BASE}/record",
        {
            "resource_type": "llm",
            "cost_amount": "31.25",
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
            "reservation_id": reservation,
        },
        format="json",
    )
    assert r.status_code == 202, r.content
    now = period(admin, budget)
    assert (now["reserved_amount"], now["spent_amount"]) == (0, 31.25)
    reservation_view = admin.get(f"/budget/v1/budgets/reservations/{reservation}").json()
    assert reservation_view["status"] == "committed"


def test_an_unknown_reservation_is_a_404_and_stores_nothing(svc, budget):
    r = svc.post(
        f"{BASE}/record",
        {"resource_type": "llm", "cost_amount": "1", "reservation_id": str(uuid.uuid4())},
        format="json",
    )
    assert r.status_code == 404
    assert CostRecord.objects.count() == 0


def test_in_a_batch_an_unknown_reservation_fails_only_its_item(svc, admin, budget):
    items = [
        {
            "idempotency_key": "a",
            "resource_type": "llm",
            "cost_amount": "5",
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
        },
        {
            "idempotency_key": "b",
            "resource_type": "llm",
            "cost_amount": "5",
            "reservation_id": str(uuid.uuid4()),
        },
    ]
    body = svc.post(f"{BASE}/record/batch", {"records": items}, format="json").json()
    assert [(x["status"], x["error_code"]) for x in body["results"]] == [
        ("created", None),
        ("failed", "NOT_FOUND"),
    ]
    assert CostRecord.objects.count() == 1
    assert period(admin, budget)["spent_amount"] == 5


def test_a_reversal_takes_the_spending_back_out(svc, admin, budget):
    r = svc.post(
        f"{BASE}/record",
        {
            "resource_type": "llm",
            "cost_amount": "12.50",
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
        },
        format="json",
    )
    assert period(admin, budget)["spent_amount"] == 12.5
    rev = admin.post(f"{BASE}/{r.json()['record_id']}/reverse", {"reason": "test"}, format="json")
    assert rev.status_code == 202
    assert period(admin, budget)["spent_amount"] == 0


def test_the_default_report_currency_is_the_first_budgets(svc, admin):
    admin.post(
        "/budget/v1/budgets",
        {
            "budget_name": "EUR",
            "budget_amount": "100.00",
            "currency": "EUR",
            "period_type": "monthly",
            "start_date": "2024-05-01",
            "allocated_to_type": "tenant",
            "enforcement_action": "soft_limit",
        },
        format="json",
    )
    assert svc.get(f"{BASE}/records").json()["aggregated"]["currency"] == "EUR"
