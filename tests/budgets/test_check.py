"""The budget check (SPEC 2.3), sequential cases, through the service."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from approvals import services as approvals
from approvals.models import ApprovalRequest
from budgets import services
from budgets.models import HoldLine, Reservation
from receipts.models import Receipt
from tests.budgets.conftest import ADMIN, check, counters, make_budget, principal

pytestmark = pytest.mark.django_db

D = Decimal


def test_hard_stop_100_allows_50_then_denies_60_and_changes_nothing(frozen):
    budget = make_budget("100")
    first = check("50")
    assert first["allowed"] is True
    assert first["budget_id"] == budget.pk
    assert first["remaining_budget"] == D("50")
    assert first["utilization_ratio"] == D("0.5")
    assert first["utilization_percent"] == D("50")
    assert first["enforcement_action"] == "hard_stop"
    assert first["reservation_id"] is not None
    assert first["reservation_expires_at"] == datetime(2024, 3, 15, 12, 15, tzinfo=UTC)
    reservations_before = Reservation.objects.count()

    second = check("60")
    assert second["allowed"] is False
    assert second["reason"] == "BUDGET_EXCEEDED"
    assert second["enforcement_action"] == "hard_stop"
    assert second["budget_id"] == budget.pk
    assert second["reservation_id"] is None
    assert second["remaining_budget"] == D("50")
    assert second["utilization_ratio"] == D("1")
    assert second["utilization_percent"] == D("110")
    assert counters(budget) == (D(0), D(50))
    assert Reservation.objects.count() == reservations_before


def test_exactly_the_amount_is_allowed(frozen):
    budget = make_budget("100")
    assert check("100")["allowed"] is True
    assert check("0.0000000001")["allowed"] is False
    assert counters(budget) == (D(0), D(100))


def test_soft_limit_past_100_percent_is_allowed_with_clamped_ratio(frozen):
    budget = make_budget("100", action="soft_limit")
    check("90")
    result = check("30")
    assert result["allowed"] is True
    assert result["enforcement_action"] == "soft_limit"
    assert result["utilization_ratio"] == D("1")
    assert result["utilization_percent"] == D("120")
    assert result["remaining_budget"] == D("0")
    assert "soft_limit" in result["message"]
    assert result["reason"] is None
    assert counters(budget) == (D(0), D(120))
    receipt = Receipt.objects.get(receipt_id=result["receipt_id"])
    assert receipt.decision_status == "warn"


def test_throttle_factor_falls_linearly_from_80_percent(frozen):
    make_budget("100", action="throttle")
    assert check("70")["throttle_factor"] is None
    assert check("10")["throttle_factor"] is None  # exactly 80 %: not above
    result = check("10")  # 90 %: halfway from 1.0 to 0.1
    assert result["allowed"] is True
    assert result["throttle_factor"] == D("0.55")
    assert check("15")["throttle_factor"] == D("0.1")  # 105 %


def test_overlap_picks_the_feature_budget_and_holds_all_four(frozen):
    tenant = make_budget("1000")
    project = make_budget("500", kind="project", target="p1")
    user = make_budget("300", kind="user", target="u1")
    feature = make_budget("200", kind="feature", target="f1")
    result = check(
        "10",
        allocated_to_type="project",
        allocated_to_id="p1",
        operation_context={"user_id": "u1", "feature_id": "f1"},
    )
    assert result["allowed"] is True
    assert result["budget_id"] == feature.pk
    assert result["remaining_budget"] == D("190")
    assert {b["budget_id"] for b in result["applied_budgets"]} == {
        tenant.pk,
        project.pk,
        user.pk,
        feature.pk,
    }
    lines = HoldLine.objects.filter(reservation_id=result["reservation_id"])
    assert {(line.budget_id, line.amount) for line in lines} == {
        (tenant.pk, D("10")),
        (project.pk, D("10")),
        (user.pk, D("10")),
        (feature.pk, D("10")),
    }
    for budget in (tenant, project, user, feature):
        assert counters(budget) == (D(0), D(10))


def test_no_allocation_context_never_picks_an_unrelated_feature_budget(frozen):
    tenant = make_budget("1000")
    make_budget("5", kind="feature", target="f1")
    make_budget("5", kind="project", target="p9")
    result = check("10")
    assert result["allowed"] is True
    assert result["budget_id"] == tenant.pk
    assert [b["budget_id"] for b in result["applied_budgets"]] == [tenant.pk]


def test_ties_go_to_the_most_specific_level(frozen):
    make_budget("100", kind="project", target="p1")
    user = make_budget("100", kind="user", target="u1")
    result = check(
        "10", allocated_to_type="project", allocated_to_id="p1", operation_context={"user_id": "u1"}
    )
    assert result["budget_id"] == user.pk


def test_hard_stop_denial_among_several_reports_the_denying_budget(frozen):
    make_budget("1000", action="soft_limit")
    project = make_budget("20", kind="project", target="p1")
    result = check("30", operation_context={"project_id": "p1"})
    assert result["allowed"] is False
    assert result["budget_id"] == project.pk
    assert result["enforcement_action"] == "hard_stop"
    over = {str(b["budget_id"]): b["over"] for b in result["applied_budgets"]}
    assert over[str(project.pk)] is True


def test_no_budget_applies_is_allowed_with_null_budget(frozen):
    result = check("10")
    assert result["allowed"] is True
    assert result["budget_id"] is None
    assert result["reservation_id"] is None
    assert result["applied_budgets"] == []


def test_no_budget_applies_is_denied_when_configured(frozen, settings):
    settings.BUDGET_NO_MATCH = "deny"
    result = check("10")
    assert result["allowed"] is False
    assert result["reason"] == "BUDGET_NO_MATCH"


def test_dry_run_holds_nothing_and_creates_no_approval(frozen):
    hard = make_budget("100")
    make_budget("10", kind="project", target="p1", action="escalate")
    allowed = check("5", dry_run=True)
    assert allowed["allowed"] is True
    assert allowed["reservation_id"] is None
    escalated = check("50", dry_run=True, operation_context={"project_id": "p1"})
    assert escalated["allowed"] is False
    assert escalated["requires_approval"] is True
    assert escalated["approval_id"] is None
    assert counters(hard) == (D(0), D(0))
    assert ApprovalRequest.objects.count() == 0
    assert Reservation.objects.count() == 0


def test_escalate_creates_one_pending_approval_and_a_repeat_returns_it(frozen):
    budget = make_budget("100", action="escalate", approval_timeout_hours=4)
    check("90")
    first = check("20")
    assert first["allowed"] is False
    assert first["requires_approval"] is True
    assert first["reason"] == "BUDGET_EXCEEDED"
    assert first["budget_id"] == budget.pk
    approval = ApprovalRequest.objects.get()
    assert first["approval_id"] == approval.pk
    assert approval.status == "pending"
    assert approval.requested_amount == D("20")
    assert approval.expires_at == datetime(2024, 3, 15, 16, 0, tzinfo=UTC)
    again = check("25")
    assert again["approval_id"] == approval.pk
    assert ApprovalRequest.objects.count() == 1
    assert counters(budget) == (D(0), D(90))
    assert Receipt.objects.get(receipt_id=first["receipt_id"]).decision_status == "soft_block"


def test_approved_request_allows_exactly_one_recheck(frozen):
    budget = make_budget("100", action="escalate")
    check("90")
    denied = check("20")
    approvals.approve(
        tenant_id="t-acme",
        approval_id=denied["approval_id"],
        approver=principal(roles=("financial_controller",), sub="fc-1"),
    )
    allowed = check("20", approval_id=denied["approval_id"])
    assert allowed["allowed"] is True
    assert allowed["approval_id"] == denied["approval_id"]
    assert allowed["reservation_id"] is not None
    assert counters(budget) == (D(0), D(110))
    consumed = ApprovalRequest.objects.get(pk=denied["approval_id"])
    assert consumed.status == "consumed"
    assert consumed.consumed_by == str(allowed["reservation_id"])
    once_more = check("20", approval_id=denied["approval_id"])
    assert once_more["allowed"] is False
    assert once_more["requires_approval"] is True
    assert once_more["approval_id"] != denied["approval_id"]
    assert counters(budget) == (D(0), D(110))


def test_an_approval_covers_only_its_requester_and_amount(frozen):
    make_budget("100", action="escalate")
    check("90")
    denied = check("20")
    approvals.approve(
        tenant_id="t-acme",
        approval_id=denied["approval_id"],
        approver=principal(roles=("financial_controller",), sub="fc-1"),
        approved_amount=D("15"),
    )
    assert check("20", approval_id=denied["approval_id"])["allowed"] is False
    other = principal(sub="svc-other")
    assert check("15", who=other, approval_id=denied["approval_id"])["allowed"] is False
    assert check("15", approval_id=denied["approval_id"])["allowed"] is True


def test_hard_stop_wins_over_an_escalate_budget(frozen):
    hard = make_budget("50", kind="project", target="p1")
    make_budget("50", action="escalate")
    result = check("60", operation_context={"project_id": "p1"})
    assert result["allowed"] is False
    assert result["enforcement_action"] == "hard_stop"
    assert result["budget_id"] == hard.pk
    assert result["requires_approval"] is False
    assert ApprovalRequest.objects.count() == 0


def test_every_check_writes_a_budget_check_receipt(frozen):
    budget = make_budget("100")
    allowed = check("10")
    denied = check("100")
    ok = Receipt.objects.get(receipt_id=allowed["receipt_id"])
    no = Receipt.objects.get(receipt_id=denied["receipt_id"])
    assert (ok.gate_id, ok.decision_status) == ("budget-check", "pass")
    assert (no.gate_id, no.decision_status) == ("budget-check", "hard_block")
    body = json.loads(ok.canonical)
    assert body["policy_version_ids"] == [f"{budget.pk}@1"]
    assert body["inputs"]["estimated_cost"] == "10"
    assert body["result"]["reservation_id"] == str(allowed["reservation_id"])


def test_receipt_keeps_only_allocation_ids_of_the_context(frozen):
    make_budget("100")
    result = check("1", operation_context={"project_id": "p1", "email": "someone@example.com"})
    body = json.loads(Receipt.objects.get(receipt_id=result["receipt_id"]).canonical)
    assert body["inputs"]["operation_context"] == {"project_id": "p1"}


# --- Batches --------------------------------------------------------------------------------


def _batch(*costs, dry_run=False, **fields):
    return services.check_budget_batch(
        tenant_id="t-acme",
        checks=[services.CheckInput(estimated_cost=D(str(c)), **fields) for c in costs],
        principal=principal(),
        dry_run=dry_run,
    )


def test_batch_holds_every_item_when_all_are_allowed(frozen):
    budget = make_budget("100")
    answer = _batch(30, 30, 40)
    assert answer["allowed"] is True
    assert [r["allowed"] for r in answer["results"]] == [True, True, True]
    assert [r["remaining_budget"] for r in answer["results"]] == [D(70), D(40), D(0)]
    assert len({r["receipt_id"] for r in answer["results"]}) == 1
    assert counters(budget) == (D(0), D(100))
    assert Reservation.objects.count() == 3


def test_batch_is_all_or_nothing(frozen):
    budget = make_budget("100")
    answer = _batch(30, 30, 50)
    assert answer["allowed"] is False
    assert [r["allowed"] for r in answer["results"]] == [False, False, False]
    assert [r["reason"] for r in answer["results"]] == [
        "BATCH_NOT_ADMITTED",
        "BATCH_NOT_ADMITTED",
        "BUDGET_EXCEEDED",
    ]
    assert all(r["reservation_id"] is None for r in answer["results"])
    assert counters(budget) == (D(0), D(0))
    assert Reservation.objects.count() == 0


def test_batch_receipt_lists_items_with_their_sha256(frozen):
    import hashlib

    from receipts.canonical import canonical_bytes, to_jsonable

    make_budget("100")
    answer = _batch(10, 20)
    receipt = Receipt.objects.get(receipt_id=answer["receipt_id"])
    body = json.loads(receipt.canonical)
    items = body["result"]["items"]
    assert [i["index"] for i in items] == [0, 1]
    assert [i["id"] for i in items] == [str(r["reservation_id"]) for r in answer["results"]]
    first = dict(answer["results"][0])
    first.pop("receipt_id")
    first.pop("correlation_id")
    item_input = services.CheckInput(estimated_cost=D(10)).receipt_inputs()
    expected = hashlib.sha256(
        canonical_bytes(to_jsonable({"inputs": item_input, "result": first}))
    ).hexdigest()
    assert items[0]["sha256"] == expected


# --- Currency -------------------------------------------------------------------------------


def test_check_in_another_currency_is_converted_with_the_fx_table(frozen):
    from costs.models import FxRate

    FxRate.objects.create(
        base_currency="USD",
        quote_currency="EUR",
        rate=D("0.5"),
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
    )
    budget = make_budget("100", currency="EUR")
    result = check("60", currency="USD")
    assert result["allowed"] is True
    assert counters(budget) == (D(0), D(30))
    assert result["remaining_budget"] == D(70)
    assert check("150", currency="USD")["allowed"] is False


def test_missing_fx_rate_denies_with_cost_calculation_error(frozen):
    budget = make_budget("100", currency="EUR")
    result = check("10", currency="JPY")
    assert result["allowed"] is False
    assert result["reason"] == "COST_CALCULATION_ERROR"
    assert result["budget_id"] == budget.pk
    assert counters(budget) == (D(0), D(0))


def test_admin_principal_used_as_requester_is_kept(frozen):
    make_budget("10", action="escalate")
    result = check("20", who=ADMIN)
    assert ApprovalRequest.objects.get(pk=result["approval_id"]).requested_by == "admin-1"
