"""`manage.py seed_demo` as `make run` uses it: every dashboard panel has figures, the approval
pages have a pending budget overrun, a pending emergency-capacity request and a decided
request, and a second run neither fails nor asks again."""

from datetime import timedelta
from decimal import Decimal

from django.core.management import call_command

from approvals.models import ApprovalRequest, Kind, Status
from budgeting_site.platform import admin_dashboard, clock
from budgets import selectors as budget_selectors
from budgets.models import Budget
from costs.models import CostRecord
from ratelimits import runtime
from ratelimits.models import EmergencyGrant, GrantStatus
from receipts.models import Receipt

TENANT = "demo"


def _counts() -> dict[str, object]:
    return {
        "approvals": sorted(
            ApprovalRequest.objects.filter(tenant_id=TENANT).values_list(
                "kind", "status", "requested_by"
            )
        ),
        "grants": EmergencyGrant.objects.filter(tenant_id=TENANT).count(),
        "checks": Receipt.objects.filter(
            tenant_id=TENANT, gate_id__in=["rate-limit-check", "budget-check", "approval"]
        ).count(),
        "budgets": Budget.objects.filter(tenant_id=TENANT).count(),
    }


def test_seed_demo_fills_the_dashboard_and_the_approval_pages_and_runs_twice(db):
    runtime.forget(TENANT)  # no rate-limit snapshot of an earlier test's demo policies
    call_command("seed_demo", verbosity=0)
    first = _counts()
    records = CostRecord.objects.filter(tenant_id=TENANT).count()

    # The approval pages: a pending overrun on the escalate budget by svc-summarizer, a
    # rejection with a comment by finance, and 6 h of emergency capacity waiting.
    summarize = Budget.objects.get(tenant_id=TENANT, budget_name="Summarize feature")
    pending = ApprovalRequest.objects.get(
        tenant_id=TENANT, kind=Kind.BUDGET_OVERRUN, status=Status.PENDING
    )
    assert pending.requested_by == "svc-summarizer"
    assert pending.budget_id == summarize.pk
    assert summarize.enforcement_action == "escalate"
    details = pending.details
    projected = Decimal(details["spent_amount"]) + pending.requested_amount
    assert projected > Decimal(details["budget_amount"])  # the request is an overrun
    decided = ApprovalRequest.objects.get(tenant_id=TENANT, status=Status.REJECTED)
    assert decided.decided_by == "user:finance"
    assert decided.comment
    capacity = ApprovalRequest.objects.get(
        tenant_id=TENANT, kind=Kind.EMERGENCY_CAPACITY, status=Status.PENDING
    )
    assert capacity.details["duration_seconds"] > 4 * 3600
    assert EmergencyGrant.objects.get(tenant_id=TENANT).status == GrantStatus.PENDING_APPROVAL

    # Every dashboard panel has figures (a superuser's view).
    now = clock.now()
    panels = {
        key: admin_dashboard.build_panel(key, tenant_ids=None, now=now)
        for key in admin_dashboard.PANELS
    }
    assert {key: p["state"] for key, p in panels.items()} == dict.fromkeys(panels, "ok")
    for key in ("cost_per_day", "budget_utilization", "ratelimit_denials", "open_alerts"):
        assert panels[key]["data"]["empty"] is False, key
    for dimension, chart in panels["top_spenders"]["data"].items():
        assert chart["empty"] is False, dimension
    assert panels["ratelimit_denials"]["data"]["total"] >= 20  # the burst past 60 renders
    assert len(panels["budget_utilization"]["data"]["rows"]) == 5

    # The overrun's recent spending: every one of the last 7 days had some.
    week = budget_selectors.daily_spending(
        tenant_id=TENANT,
        budget_id=summarize.pk,
        start=(now - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0),
        end=now,
    )
    assert len(week) == 7
    assert all(amount > 0 for _, amount in week[:-1])  # today may not have begun yet

    # A second run: no new request, no new check, no new budget; at most the cost records of
    # an hour that passed in between.
    call_command("seed_demo", verbosity=0)
    assert _counts() == first
    assert 0 <= CostRecord.objects.filter(tenant_id=TENANT).count() - records <= 10
