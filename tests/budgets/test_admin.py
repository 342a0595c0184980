"""The admin writes through the services: a budget added in the admin is the API's budget
(with its 409s as form errors), approvals are decided by actions, ledgers are read-only."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from approvals.models import ApprovalRequest
from budgets.models import Budget, BudgetPeriod
from receipts.models import Receipt
from tests.budgets.conftest import check, make_budget

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


FORM = {
    "tenant_id": "t-acme",
    "budget_name": "Admin budget",
    "budget_type": "",
    "budget_amount": "250",
    "currency": "USD",
    "period_type": "monthly",
    "start_date_0": "2024-01-01",
    "start_date_1": "00:00:00",
    "end_date_0": "",
    "end_date_1": "",
    "allocated_to_type": "project",
    "allocated_to_id": "p-admin",
    "enforcement_action": "soft_limit",
    "thresholds": '{"warning_80": true, "critical_90": true, "exhausted_100": true}',
    "notifications": '{"channels": [], "escalation_paths": []}',
    "approval_timeout_hours": "24",
}


def test_adding_a_budget_in_the_admin_goes_through_the_service(operator, frozen):
    response = operator.post("/admin/budgets/budget/add/", FORM)
    assert response.status_code == 302, response.content[:2000]
    budget = Budget.objects.get()
    assert (budget.budget_amount, budget.created_by) == (Decimal(250), "user:op")
    assert Receipt.objects.filter(gate_id="policy-admin").count() == 1
    clash = operator.post("/admin/budgets/budget/add/", FORM)
    assert clash.status_code == 200
    assert b"overlaps" in clash.content
    assert Budget.objects.count() == 1


def test_changing_a_budget_in_the_admin_bumps_its_version(operator, frozen):
    budget = make_budget("100", kind="project", target="p-admin", action="soft_limit")
    form = {
        k: v
        for k, v in FORM.items()
        if k not in {"tenant_id", "allocated_to_type", "allocated_to_id", "period_type"}
    }
    form["version_seen"] = "1"
    response = operator.post(f"/admin/budgets/budget/{budget.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    budget.refresh_from_db()
    assert (budget.budget_amount, budget.version) == (Decimal(250), 2)


def test_approve_action_calls_the_service(operator, frozen):
    make_budget("10", action="escalate")
    approval_id = check("20")["approval_id"]
    response = operator.post(
        "/admin/approvals/approvalrequest/",
        {"action": "approve_selected", "_selected_action": [str(approval_id)]},
    )
    assert response.status_code == 302
    approval = ApprovalRequest.objects.get()
    assert (approval.status, approval.decided_by) == ("approved", "user:op")
    assert Receipt.objects.filter(gate_id="approval").count() == 1


def test_ledgers_are_read_only(operator, frozen):
    make_budget("100")
    check("5")
    row = BudgetPeriod.objects.get()
    assert operator.get("/admin/budgets/budgetperiod/").status_code == 200
    assert operator.get(f"/admin/budgets/budgetperiod/{row.pk}/change/").status_code == 200
    assert operator.get("/admin/budgets/budgetperiod/add/").status_code == 403
    assert operator.get("/admin/budgets/spendentry/").status_code == 200
    assert operator.get("/admin/budgets/reservation/").status_code == 200
