"""Demo budgets for `manage.py seed_demo`: a realistic small tenant, safe to run again."""

from decimal import Decimal

from budgeting_site.platform import clock
from budgeting_site.platform.principal import Principal
from budgets.models import Budget

DEMO_BUDGETS = (
    # name, target type, target id (None: the tenant), amount, period, enforcement
    ("Company cloud spend", "tenant", None, "25000", "monthly", "soft_limit"),
    ("Search project", "project", "proj-search", "6000", "monthly", "hard_stop"),
    ("ML training", "project", "proj-ml-training", "40000", "quarterly", "throttle"),
    ("Summarize feature", "feature", "feat-summarize", "750", "weekly", "escalate"),
    ("Batch pipeline user", "user", "svc-batch-pipeline", "120", "daily", "hard_stop"),
)

#: Spending so far this period, so the dashboards have something to show.
DEMO_SPENDING = (
    ("demo-rec-1", "project", "proj-search", "3150.40"),
    ("demo-rec-2", "project", "proj-ml-training", "29410.00"),
    ("demo-rec-3", "feature", "feat-summarize", "512.75"),
    ("demo-rec-4", "user", "svc-batch-pipeline", "37.20"),
)


def seed(tenant_id: str) -> None:
    from budgets import services

    actor = Principal(
        principal="system:seed_demo",
        tenant_id=tenant_id,
        roles=frozenset({"tenant_admin"}),
        kind="system",
    )
    for name, kind, target, amount, period, action in DEMO_BUDGETS:
        target_id = target or tenant_id
        if Budget.objects.filter(
            tenant_id=tenant_id,
            allocated_to_type=kind,
            allocated_to_id=target_id,
            deleted_at__isnull=True,
        ).exists():
            continue
        services.create_budget(
            tenant_id=tenant_id,
            data={
                "budget_name": name,
                "budget_amount": Decimal(amount),
                "currency": "USD",
                "period_type": period,
                "allocated_to_type": kind,
                "allocated_to_id": target_id,
                "enforcement_action": action,
            },
            actor=actor,
        )
    now = clock.now()
    for record_id, kind, target, amount in DEMO_SPENDING:
        services.apply_spending(
            tenant_id=tenant_id,
            amount=Decimal(amount),
            currency="USD",
            attributed_to_type=kind,
            attributed_to_id=target,
            record_id=record_id,
            at=now,
        )
