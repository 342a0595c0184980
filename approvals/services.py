"""Approval requests (SPEC 2.5): every write goes through these functions.

One mechanism serves budget overruns (the budgets app, on an `escalate` budget) and emergency
capacity (the ratelimits app, on a grant longer than 4 h). The API, the admin actions and the
managers' pages all call the same functions.

Signatures (keyword-only; all run inside the caller's transaction when there is one, else in
their own):

    request_approval(*, tenant_id: str, kind: str, requested_by: str,
                     requested_amount: Decimal, currency: str = "",
                     budget_id: UUID | None = None, period_start: datetime | None = None,
                     policy_id: UUID | None = None, timeout_hours: int | float = 24,
                     details: dict | None = None, at: datetime | None = None)
        -> ApprovalRequested(approval: ApprovalRequest, created: bool)
        One pending request per (tenant, kind, requester, subject), where the subject is the
        budget and its period (`budget_overrun`) or the policy (`emergency_capacity`): a repeat
        returns the same pending request with created=False. `kind` is "budget_overrun"
        (needs budget_id and period_start) or "emergency_capacity" (needs policy_id; put
        `extra_requests`, `duration_seconds`, `reason` in `details` and the number of extra
        requests in `requested_amount`). It expires `timeout_hours` after it was made.

    approve(*, tenant_id: str, approval_id: UUID, approver: Principal, comment: str = "",
            approved_amount: Decimal | None = None, at: datetime | None = None)
        -> ApprovalRequest
    reject(*, tenant_id: str, approval_id: UUID, approver: Principal, comment: str = "",
           at: datetime | None = None) -> ApprovalRequest
        404 ApprovalNotFound (other tenant too) → 403 NotAnApprover (needs
        financial_controller, or tenant_admin when APPROVALS_ALLOW_TENANT_ADMIN) → 403
        SelfApprovalForbidden (approver.principal == requested_by) → 409 InvalidTransition
        (not pending, or already past expires_at). Writes a receipt (gate `approval`).
        `approved_amount` defaults to the requested amount. On approval, every callback
        registered for the kind runs inside the same transaction (an exception rolls the
        approval back); on rejection, every closed-callback does.

    consume_approval(*, tenant_id: str, approval_id: UUID, requested_by: str,
                     amount: Decimal, budget_id: UUID | None = None,
                     policy_id: UUID | None = None, consumed_by: str = "",
                     at: datetime | None = None) -> bool
        A conditional UPDATE approved → consumed: True for exactly one of any number of
        concurrent callers, and only if the request is approved, not expired, made by
        `requested_by`, for that budget/policy, and `amount ≤ approved_amount`.

    register_on_approved(kind: str, callback: Callable[[ApprovalRequest], None]) -> None
        Call from AppConfig.ready(). The ratelimits app registers the start of an
        emergency-capacity grant here.

    register_on_closed(kind: str,
                       callback: Callable[[ApprovalRequest, dict[str, Any]], None]) -> None
        Call from AppConfig.ready(). The callback runs whenever a request of the kind reaches
        a state of `models.CLOSED` (rejected; expired, from pending or approved), inside the
        transaction of that transition, with the request in its new status and the receipt
        actor of the transition (the approver, or the expiry job's system actor). An
        exception rolls the transition back. It must be a no-op when nothing waits on the
        request (an approved one already did its work). The ratelimits app ends a grant that
        waits for the request here.

    expire_approvals(*, at: datetime | None = None, limit: int = 1000) -> int
        pending/approved → expired for every request past expires_at, one receipt and one
        round of closed-callbacks each, one transaction each; safe to run twice (task
        `approvals.expire`): a request already expired is not touched again. A request whose
        callback fails stays as it was (logged) and is retried by the next run.

Reads are in `approvals.selectors` (`get_approval`, `list_approvals`, `approval_covers`,
`consumable`).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction

from approvals import selectors
from approvals.exceptions import (
    ApprovalNotFound,
    InvalidTransition,
    NotAnApprover,
    SelfApprovalForbidden,
)
from approvals.models import ApprovalRequest, Kind, Status, can_transition
from budgeting_site.platform import clock
from budgeting_site.platform.errors import ValidationFailed
from budgeting_site.platform.permissions import FINANCIAL_CONTROLLER, TENANT_ADMIN
from budgeting_site.platform.principal import Principal

logger = logging.getLogger(__name__)

OnApproved = Callable[[ApprovalRequest], None]
OnClosed = Callable[[ApprovalRequest, dict[str, Any]], None]

_ON_APPROVED: dict[str, list[OnApproved]] = {}
_ON_CLOSED: dict[str, list[OnClosed]] = {}


class ApprovalRequested(NamedTuple):
    approval: ApprovalRequest
    created: bool


def _register(registry: dict[str, list[Any]], kind: str, callback: Any) -> None:
    if kind not in Kind.values:
        raise ValueError(f"unknown approval kind {kind!r}")
    callbacks = registry.setdefault(kind, [])
    if callback not in callbacks:
        callbacks.append(callback)


def register_on_approved(kind: str, callback: OnApproved) -> None:
    _register(_ON_APPROVED, kind, callback)


def register_on_closed(kind: str, callback: OnClosed) -> None:
    _register(_ON_CLOSED, kind, callback)


def _tell_closed(approval: ApprovalRequest, actor: dict[str, Any]) -> None:
    for callback in _ON_CLOSED.get(approval.kind, []):
        callback(approval, actor)


def approver_roles() -> frozenset[str]:
    if settings.APPROVALS_ALLOW_TENANT_ADMIN:
        return frozenset({FINANCIAL_CONTROLLER, TENANT_ADMIN})
    return frozenset({FINANCIAL_CONTROLLER})


def subject_for(
    *, kind: str, budget_id: uuid.UUID | None, period_start: datetime | None, policy_id: Any
) -> str:
    if kind == Kind.BUDGET_OVERRUN:
        if budget_id is None or period_start is None:
            raise ValueError("a budget_overrun request needs budget_id and period_start")
        return f"budget:{budget_id}:{period_start.isoformat()}"
    if kind == Kind.EMERGENCY_CAPACITY:
        if policy_id is None:
            raise ValueError("an emergency_capacity request needs policy_id")
        return f"policy:{policy_id}"
    raise ValueError(f"unknown approval kind {kind!r}")


def request_approval(
    *,
    tenant_id: str,
    kind: str,
    requested_by: str,
    requested_amount: Decimal,
    currency: str = "",
    budget_id: uuid.UUID | None = None,
    period_start: datetime | None = None,
    policy_id: uuid.UUID | None = None,
    timeout_hours: int | float = 24,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> ApprovalRequested:
    at = at or clock.now()
    subject = subject_for(
        kind=kind, budget_id=budget_id, period_start=period_start, policy_id=policy_id
    )
    pending = ApprovalRequest.objects.filter(
        tenant_id=tenant_id,
        kind=kind,
        requested_by=requested_by,
        subject=subject,
        status=Status.PENDING,
    )
    with transaction.atomic():
        existing = pending.first()
        if existing is not None:
            if existing.expires_at > at:
                return ApprovalRequested(existing, False)
            # Past its time but not yet swept: expire it now so a fresh request can be made.
            _expire_one(existing.pk, at)
        try:
            with transaction.atomic():
                approval = ApprovalRequest.objects.create(
                    tenant_id=tenant_id,
                    kind=kind,
                    budget_id=budget_id,
                    policy_id=policy_id,
                    period_start=period_start,
                    subject=subject,
                    status=Status.PENDING,
                    requested_amount=requested_amount,
                    currency=currency or "",
                    requested_by=requested_by,
                    details=details or {},
                    created_at=at,
                    expires_at=at + timedelta(hours=float(timeout_hours)),
                )
        except IntegrityError:
            # A concurrent repeat won the unique pending row: return that one.
            winner = pending.first()
            if winner is None:
                raise
            return ApprovalRequested(winner, False)
    logger.info(
        "approval.requested",
        extra={"approval_id": str(approval.pk), "kind": kind, "tenant_id": tenant_id},
    )
    return ApprovalRequested(approval, True)


def _decide(
    tenant_id: str,
    approval_id: uuid.UUID,
    approver: Principal,
    target: str,
    comment: str,
    approved_amount: Decimal | None,
    at: datetime | None,
) -> ApprovalRequest:
    at = at or clock.now()
    with transaction.atomic():
        approval = (
            ApprovalRequest.objects.select_for_update()
            .filter(pk=approval_id, tenant_id=tenant_id)
            .first()
        )
        if approval is None:
            raise ApprovalNotFound()
        if not approver.has_any(approver_roles()):
            raise NotAnApprover()
        if approver.principal == approval.requested_by:
            raise SelfApprovalForbidden()
        if not can_transition(approval.status, target) or approval.status != Status.PENDING:
            raise InvalidTransition(
                f"An approval request that is {approval.status} cannot become {target}",
                details={"status": approval.status, "target": target},
            )
        if approval.expires_at <= at:
            raise InvalidTransition(
                "The approval request has expired",
                details={"status": "expired", "target": target},
            )
        fields: dict[str, Any] = {
            "status": target,
            "decided_by": approver.principal,
            "decided_at": at,
            "comment": comment or "",
        }
        if target == Status.APPROVED:
            amount = approval.requested_amount if approved_amount is None else approved_amount
            if amount < 0:
                raise ValidationFailed(
                    "approved_amount must not be negative",
                    details={"approved_amount": ["must not be negative"]},
                )
            fields["approved_amount"] = amount
        updated = ApprovalRequest.objects.filter(
            pk=approval.pk, status=Status.PENDING, expires_at__gt=at
        ).update(**fields)
        if updated != 1:  # cannot happen under the row lock; kept as a second guard
            raise InvalidTransition()
        approval.refresh_from_db()
        _decision_receipt(approval, actor=approver.actor, at=at)
        if target == Status.APPROVED:
            for callback in _ON_APPROVED.get(approval.kind, []):
                callback(approval)
        else:
            _tell_closed(approval, approver.actor)
    logger.info(
        "approval.decided",
        extra={"approval_id": str(approval.pk), "status": target, "tenant_id": tenant_id},
    )
    return approval


def approve(
    *,
    tenant_id: str,
    approval_id: uuid.UUID,
    approver: Principal,
    comment: str = "",
    approved_amount: Decimal | None = None,
    at: datetime | None = None,
) -> ApprovalRequest:
    return _decide(tenant_id, approval_id, approver, Status.APPROVED, comment, approved_amount, at)


def reject(
    *,
    tenant_id: str,
    approval_id: uuid.UUID,
    approver: Principal,
    comment: str = "",
    at: datetime | None = None,
) -> ApprovalRequest:
    return _decide(tenant_id, approval_id, approver, Status.REJECTED, comment, None, at)


def consume_approval(
    *,
    tenant_id: str,
    approval_id: uuid.UUID,
    requested_by: str,
    amount: Decimal,
    budget_id: uuid.UUID | None = None,
    policy_id: uuid.UUID | None = None,
    consumed_by: str = "",
    at: datetime | None = None,
) -> bool:
    at = at or clock.now()
    candidates = selectors.consumable(
        tenant_id, approval_id, requested_by, amount, budget_id, policy_id, at
    )
    # The row count decides: of two concurrent consumers, exactly one sees 1.
    won = (
        candidates.update(status=Status.CONSUMED, consumed_at=at, consumed_by=consumed_by[:128])
        == 1
    )
    if won:
        logger.info("approval.consumed", extra={"approval_id": str(approval_id)})
    return won


def _expire_one(approval_id: uuid.UUID, at: datetime) -> bool:
    updated = ApprovalRequest.objects.filter(
        pk=approval_id,
        status__in=[Status.PENDING, Status.APPROVED],
        expires_at__lte=at,
    ).update(status=Status.EXPIRED)
    if updated != 1:
        return False
    approval = ApprovalRequest.objects.get(pk=approval_id)
    from receipts.services import system_actor

    actor = system_actor("approvals.expire")
    _decision_receipt(approval, actor=actor, at=at)
    _tell_closed(approval, actor)
    return True


def expire_approvals(*, at: datetime | None = None, limit: int = 1000) -> int:
    at = at or clock.now()
    due = list(
        ApprovalRequest.objects.filter(
            status__in=[Status.PENDING, Status.APPROVED], expires_at__lte=at
        )
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for approval_id in due:
        try:
            with transaction.atomic():
                if _expire_one(approval_id, at):
                    expired += 1
        except Exception:
            # A closed-callback failed and rolled this one back: the next run retries it, and
            # one bad request does not hold back the expiry of the others.
            logger.exception("approval.expire_failed", extra={"approval_id": str(approval_id)})
    if expired:
        logger.info("approval.expired", extra={"count": expired})
    return expired


_DECISION_STATUS = {
    Status.APPROVED: "pass",
    Status.REJECTED: "hard_block",
    Status.EXPIRED: "hard_block",
}


def _decision_receipt(approval: ApprovalRequest, *, actor: dict[str, Any], at: datetime) -> None:
    from receipts.services import emit_receipt

    emit_receipt(
        tenant_id=approval.tenant_id,
        gate_id="approval",
        inputs={
            "approval_id": approval.pk,
            "kind": approval.kind,
            "budget_id": approval.budget_id,
            "policy_id": approval.policy_id,
            "requested_amount": approval.requested_amount,
            "currency": approval.currency,
            "requested_by": approval.requested_by,
        },
        result={
            "status": approval.status,
            "approved_amount": approval.approved_amount,
            "decided_by": approval.decided_by,
            "expires_at": approval.expires_at,
        },
        decision_status=_DECISION_STATUS.get(approval.status, "pass"),
        rationale=f"approval {approval.status}",
        badges=[approval.kind, approval.status],
        policy_version_ids=[str(approval.budget_id or approval.policy_id or approval.pk)],
        actor=actor,
        degraded=False,
        timestamp_utc=at,
    )
