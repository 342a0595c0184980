"""Reads of approval requests, always scoped to a tenant."""

import uuid
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from approvals.exceptions import ApprovalNotFound
from approvals.models import ApprovalRequest, Status
from budgeting_site.platform import clock
from budgeting_site.platform.queries import filter_given


def get_approval(*, tenant_id: str, approval_id: uuid.UUID) -> ApprovalRequest:
    approval = ApprovalRequest.objects.filter(tenant_id=tenant_id, pk=approval_id).first()
    if approval is None:
        raise ApprovalNotFound()
    return approval


def list_approvals(
    *, tenant_id: str, status: str | None = None, kind: str | None = None
) -> QuerySet[ApprovalRequest]:
    return filter_given(
        ApprovalRequest.objects.filter(tenant_id=tenant_id), status=status, kind=kind
    ).order_by("-created_at", "-id")


def approval_covers(
    *,
    tenant_id: str,
    approval_id: uuid.UUID,
    requested_by: str,
    amount: Decimal,
    budget_id: uuid.UUID | None = None,
    policy_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> bool:
    """Would `consume_approval` with these arguments succeed now? (For dry runs.)"""
    at = at or clock.now()
    return consumable(
        tenant_id, approval_id, requested_by, amount, budget_id, policy_id, at
    ).exists()


def consumable(
    tenant_id: str,
    approval_id: uuid.UUID,
    requested_by: str,
    amount: Decimal,
    budget_id: uuid.UUID | None,
    policy_id: uuid.UUID | None,
    at: datetime,
    /,
) -> QuerySet[ApprovalRequest]:
    """The request, if it may be consumed with these arguments at `at`: approved, not expired,
    made by `requested_by`, for that budget/policy (when given), and `amount ≤
    approved_amount`. `consume_approval` updates it with these conditions in its WHERE."""
    candidates = ApprovalRequest.objects.filter(
        pk=approval_id,
        tenant_id=tenant_id,
        status=Status.APPROVED,
        requested_by=requested_by,
        expires_at__gt=at,
        approved_amount__gte=amount,
    )
    if budget_id is not None:
        candidates = candidates.filter(budget_id=budget_id)
    if policy_id is not None:
        candidates = candidates.filter(policy_id=policy_id)
    return candidates
