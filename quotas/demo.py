"""Demo quotas for `manage.py seed_demo`, written through the services (safe to run again)."""

from datetime import UTC, datetime
from decimal import Decimal

from budgeting_site.platform import clock
from quotas import selectors, services
from receipts.services import system_actor

ACTOR = system_actor("seed_demo")


def _month(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def seed(tenant_id: str) -> None:
    if selectors.live_quotas(tenant_id).exists():
        return
    start, end = _month(clock.now())
    services.allocate_quota(
        tenant_id=tenant_id,
        actor=ACTOR,
        data={
            "resource_type": "api_calls",
            "allocated_amount": Decimal(100_000),
            "max_burst_amount": Decimal(10_000),
            "period_start": start,
            "period_end": end,
        },
    )
    services.allocate_quota(
        tenant_id=tenant_id,
        actor=ACTOR,
        data={
            "resource_type": "storage_gb",
            "allocation_type": "user",
            "allocated_to_id": "user-ada",
            "allocated_amount": Decimal(500),
            "period_start": start,
            "period_end": end,
            "renewal_strategy": "usage_based",
        },
    )
    services.allocate_pool(
        tenant_id=tenant_id,
        actor=ACTOR,
        resource_type="gpu_hours",
        pool_amount=Decimal(1000),
        strategy="priority",
        period_start=start,
        period_end=end,
        entities=[
            services.PoolEntity("project", "proj-search", tier=1),
            services.PoolEntity("project", "proj-recs", tier=1),
            services.PoolEntity("project", "proj-ads", tier=2),
            services.PoolEntity("project", "proj-research", reserved_amount=Decimal(100)),
        ],
    )
    for amount in (30_000, 25_000, 27_500):
        services.consume(
            tenant_id=tenant_id,
            actor=ACTOR,
            resource_type="api_calls",
            amount=Decimal(amount),
            operation_type="demo_traffic",
        )
    services.consume(
        tenant_id=tenant_id,
        actor=ACTOR,
        resource_type="gpu_hours",
        allocation_type="project",
        allocated_to_id="proj-ads",
        amount=Decimal(140),
        operation_type="training_run",
        resource_id="run-42",
    )
