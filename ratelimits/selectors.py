"""Reads, always scoped to a tenant."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import BigIntegerField, JSONField, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from budgeting_site.platform import clock
from ratelimits.exceptions import PolicyNotFound
from ratelimits.models import EmergencyGrant, GrantStatus, RateLimitPolicy
from ratelimits.runtime import GrantSnap, PolicySnap, Snapshot

logger = logging.getLogger(__name__)


def get_policy(*, tenant_id: str, policy_id: uuid.UUID) -> RateLimitPolicy:
    policy = RateLimitPolicy.objects.filter(tenant_id=tenant_id, pk=policy_id).first()
    if policy is None:
        raise PolicyNotFound(details={"policy_id": str(policy_id)})
    return policy


def list_policies(
    *,
    tenant_id: str,
    scope_type: str | None = None,
    scope_id: str | None = None,
    resource_type: str | None = None,
) -> QuerySet[RateLimitPolicy]:
    qs = RateLimitPolicy.objects.filter(tenant_id=tenant_id)
    if scope_type:
        qs = qs.filter(scope_type=scope_type)
    if scope_id:
        qs = qs.filter(scope_id=scope_id)
    if resource_type:
        qs = qs.filter(resource_type=resource_type)
    return qs.order_by("-created_at", "-id")


def active_grants(
    *, tenant_id: str, policy_id: uuid.UUID, at: datetime | None = None
) -> QuerySet[EmergencyGrant]:
    at = at or clock.now()
    return EmergencyGrant.objects.filter(
        tenant_id=tenant_id,
        policy_id=policy_id,
        status=GrantStatus.ACTIVE,
        starts_at__lte=at,
        ends_at__gt=at,
    )


def list_grants(*, tenant_id: str, policy_id: uuid.UUID) -> QuerySet[EmergencyGrant]:
    return EmergencyGrant.objects.filter(tenant_id=tenant_id, policy_id=policy_id)


def load_snapshot(tenant_id: str, epoch: int) -> Snapshot:
    """Every enabled policy of the tenant and every grant that has not ended."""
    now = clock.now()
    policies = tuple(
        PolicySnap(
            id=str(p.pk),
            version=p.version,
            scope_type=p.scope_type,
            scope_id=p.scope_id,
            resource_type=p.resource_type,
            limit_value=p.limit_value,
            time_window_seconds=p.time_window_seconds,
            algorithm=p.algorithm,
            burst_capacity=p.burst_capacity,
            overrides=dict(p.overrides or {}),
            mode=p.mode,
            fail_mode=p.fail_mode,
            usage_factor=p.usage_factor,
            policy_name=p.policy_name,
        )
        for p in RateLimitPolicy.objects.filter(tenant_id=tenant_id, enabled=True).order_by(
            "created_at", "id"
        )
    )
    grants = tuple(
        GrantSnap(str(g.policy_id), g.extra_requests, g.starts_at, g.ends_at)
        for g in EmergencyGrant.objects.filter(
            tenant_id=tenant_id, status=GrantStatus.ACTIVE, ends_at__gt=now
        )
        if g.starts_at is not None and g.ends_at is not None
    )
    return Snapshot(epoch=epoch, policies=policies, grants=grants)


def matching_policies(
    snapshot: Snapshot, *, tenant_id: str, resource_type: str, scopes: dict[str, str]
) -> list[PolicySnap]:
    """The tenant-level policy for the resource type and every policy whose scope matches."""
    out = []
    for p in snapshot.policies:
        if p.resource_type != resource_type:
            continue
        if p.scope_type == "tenant":
            if p.scope_id == tenant_id:
                out.append(p)
        elif scopes.get(p.scope_type) == p.scope_id:
            out.append(p)
    return out


def throttle_factors(tenant_id: str) -> list[tuple[str, str, Decimal]]:
    """The budget throttle factors the budgets app publishes: (scope_type, scope_id, factor).

    Read through `budgets.selectors.rate_limit_throttle_factors(tenant_id=...)` when the
    budgets app provides it (kept apart: no model of another app is read here); none else.
    """
    try:
        from budgets import selectors as budget_selectors
    except ImportError:
        return []
    publish: Any = getattr(budget_selectors, "rate_limit_throttle_factors", None)
    if publish is None:
        return []
    try:
        return [(str(t), str(i), Decimal(f)) for t, i, f in publish(tenant_id=tenant_id)]
    except Exception:
        # A budgets failure must not fail a rate-limit check: no throttle then.
        logger.exception("ratelimit.throttle_factors_failed", extra={"tenant_id": tenant_id})
        return []


def throttle_for(
    policy: PolicySnap, tenant_id: str, factors: list[tuple[str, str, Decimal]]
) -> Decimal:
    """The smallest factor of the budgets with the policy's own scope (a tenant budget: all)."""
    best = Decimal(1)
    for scope_type, scope_id, factor in factors:
        tenant_wide = scope_type == "tenant" and scope_id == tenant_id
        if tenant_wide or (scope_type == policy.scope_type and scope_id == policy.scope_id):
            best = min(best, factor)
    return best


def usage_over(*, tenant_id: str, policy_id: uuid.UUID, since: datetime) -> int:
    """Requests a policy admitted since an instant: the `request_count`s of its rate-limit
    receipts whose check was admitted and was not a dry run (a dry run consumes nothing).

    Receipts keep only their signed canonical text, so rows are found by the policy's
    `"<id>@` (its entry in `policy_version_ids`) and summed from the JSON in the database. A
    `warn` receipt means some shadow policy denied; whether it was this one is read from the
    receipt's verdicts (rare, so read in Python).
    """
    from receipts.models import Receipt

    doc = Cast("canonical", output_field=JSONField())
    rows = (
        Receipt.objects.filter(
            tenant_id=tenant_id,
            gate_id="rate-limit-check",
            timestamp_utc__gte=since,
            canonical__contains=f'"{policy_id}@',
        )
        .annotate(doc=doc)
        .filter(doc__inputs__dry_run=False)
    )
    count = Cast(
        KeyTextTransform("request_count", KeyTransform("inputs", "doc")), BigIntegerField()
    )
    passed = rows.filter(decision_status="pass").aggregate(total=Sum(count))["total"] or 0
    warned = 0
    for canonical in rows.filter(decision_status="warn").values_list("canonical", flat=True):
        body = json.loads(canonical)
        verdicts = (body.get("result") or {}).get("policies") or []
        if any(v.get("policy_id") == str(policy_id) and v.get("allowed") for v in verdicts):
            warned += int((body.get("inputs") or {}).get("request_count") or 0)
    return int(passed) + warned


__all__ = [
    "active_grants",
    "dashboard_denials_per_hour",
    "get_policy",
    "list_grants",
    "list_policies",
    "load_snapshot",
    "matching_policies",
    "throttle_factors",
    "throttle_for",
    "usage_over",
]


def dashboard_denials_per_hour(
    *, tenant_ids: list[str] | None, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """The admin dashboard's panel: (hour, denied checks) from the rate-limit receipts."""
    from django.db.models import Count
    from django.db.models.functions import TruncHour

    from receipts.models import Receipt

    qs = Receipt.objects.filter(
        gate_id="rate-limit-check",
        decision_status="hard_block",
        timestamp_utc__gte=start,
        timestamp_utc__lt=end,
    )
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    rows = (
        qs.annotate(hour=TruncHour("timestamp_utc"))
        .values("hour")
        .annotate(count=Count("receipt_id"))
        .order_by("hour")
    )
    return [(row["hour"], int(row["count"])) for row in rows]
