"""Reads of the quotas app, always scoped to a tenant."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import DecimalField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from quotas.exceptions import QuotaNotFound
from quotas.models import Quota, QuotaUsage

#: "the last 30 days" of the dynamic strategy (SPEC 5).
DYNAMIC_LOOKBACK = timedelta(days=30)


def live_quotas(tenant_id: str) -> QuerySet[Quota]:
    return Quota.objects.filter(tenant_id=tenant_id, deleted_at__isnull=True)


def get_quota(*, tenant_id: str, quota_id: Any) -> Quota:
    quota = live_quotas(tenant_id).filter(pk=quota_id).first()
    if quota is None:
        raise QuotaNotFound(details={"quota_id": str(quota_id)})
    return quota


def list_quotas(
    *,
    tenant_id: str,
    now: datetime,
    resource_type: str | None = None,
    allocation_type: str | None = None,
    allocated_to_id: str | None = None,
    active_only: bool = False,
) -> QuerySet[Quota]:
    qs = live_quotas(tenant_id)
    if resource_type is not None:
        qs = qs.filter(resource_type=resource_type)
    if allocation_type is not None:
        qs = qs.filter(allocation_type=allocation_type)
    if allocated_to_id is not None:
        qs = qs.filter(allocated_to_id=allocated_to_id)
    if active_only:
        qs = qs.filter(period_start__lte=now, period_end__gt=now)
    return qs.order_by("-created_at", "-quota_id")


def current_quota(
    *,
    tenant_id: str,
    resource_type: str,
    allocation_type: str,
    allocated_to_id: str,
    at: datetime,
) -> Quota | None:
    """The live quota of a target whose period [start, end) contains `at` (at most one)."""
    return (
        live_quotas(tenant_id)
        .filter(
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            period_start__lte=at,
            period_end__gt=at,
        )
        .order_by("period_start")
        .first()
    )


def overlapping_quota(
    *,
    tenant_id: str,
    resource_type: str,
    allocation_type: str,
    allocated_to_id: str,
    period_start: datetime,
    period_end: datetime,
    exclude_id: Any = None,
) -> Quota | None:
    qs = live_quotas(tenant_id).filter(
        resource_type=resource_type,
        allocation_type=allocation_type,
        allocated_to_id=allocated_to_id,
        period_start__lt=period_end,
        period_end__gt=period_start,
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.order_by("period_start").first()


def average_use_per_period(
    *,
    tenant_id: str,
    resource_type: str,
    allocation_type: str,
    allocated_to_id: str,
    period_length: timedelta,
    now: datetime,
) -> Decimal | None:
    """The target's average use per period of `period_length`, over the quota periods that
    ended in the last 30 days: their total use over their total length, scaled to the period.
    None when no period ended in that window (no history)."""
    rows = list(
        Quota.objects.filter(
            tenant_id=tenant_id,
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            deleted_at__isnull=True,
            period_end__lte=now,
            period_end__gt=now - DYNAMIC_LOOKBACK,
        ).values_list("used_amount", "period_start", "period_end")
    )
    if not rows:
        return None
    used = sum((r[0] for r in rows), Decimal(0))
    seconds = sum((int((r[2] - r[1]).total_seconds()) for r in rows), 0)
    if seconds <= 0:
        return None
    return used * Decimal(int(period_length.total_seconds())) / Decimal(seconds)


def quotas_due_for_renewal(*, now: datetime, exclude: set[Any], limit: int) -> list[Any]:
    return list(
        Quota.objects.filter(
            auto_renew=True,
            renewed_to__isnull=True,
            deleted_at__isnull=True,
            renewal_due_at__lte=now,
        )
        .exclude(pk__in=exclude)
        .order_by("renewal_due_at", "quota_id")
        .values_list("pk", flat=True)[:limit]
    )


def usage_ledger_totals(*, since: datetime) -> QuerySet[Quota]:
    """Quotas whose period ended after `since`, each with the sum of its usage history."""
    ledger = (
        QuotaUsage.objects.filter(quota_id=OuterRef("pk"))
        .order_by()
        .values("quota_id")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    money = DecimalField(max_digits=28, decimal_places=10)
    return (
        Quota.objects.filter(Q(period_end__gt=since))
        .annotate(
            ledger_amount=Coalesce(
                Subquery(ledger, output_field=money), Value(Decimal(0)), output_field=money
            )
        )
        .order_by("quota_id")
    )


def usage_history(*, tenant_id: str, quota_id: Any) -> QuerySet[QuotaUsage]:
    return QuotaUsage.objects.filter(tenant_id=tenant_id, quota_id=quota_id)
