"""Approval requests (SPEC 2.5): one mechanism for every "needs a human" decision."""

import uuid

from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 28, "decimal_places": 10}


class Kind(models.TextChoices):
    BUDGET_OVERRUN = "budget_overrun"
    EMERGENCY_CAPACITY = "emergency_capacity"


class Status(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CONSUMED = "consumed"


#: The state machine, as data. Anything not listed here is a 409 `CONFLICT`.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.REJECTED, Status.EXPIRED}),
    Status.APPROVED: frozenset({Status.CONSUMED, Status.EXPIRED}),
    Status.REJECTED: frozenset(),
    Status.EXPIRED: frozenset(),
    Status.CONSUMED: frozenset(),
}


#: The final states in which a request grants nothing (any longer): rejected, or expired whether
#: it was pending or approved. `consumed` is final too, but it is the approval being used. The
#: subject of a request that reaches one of these is told (`services.register_on_closed`).
CLOSED: frozenset[str] = frozenset({Status.REJECTED, Status.EXPIRED})


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class ApprovalRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    budget_id = models.UUIDField(null=True, blank=True)
    policy_id = models.UUIDField(null=True, blank=True)
    #: The budget's period the overrun belongs to (null for emergency capacity).
    period_start = models.DateTimeField(null=True, blank=True)
    #: What the request is about, for the one-pending-per-requester rule:
    #: "budget:<id>:<period_start>" or "policy:<id>".
    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_amount = models.DecimalField(**MONEY)
    approved_amount = models.DecimalField(**MONEY, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    requested_by = models.CharField(max_length=255)
    decided_by = models.CharField(max_length=255, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    #: Ids and aggregates that help the approver (never personal data).
    details = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    #: What consumed an approved request (a reservation id, a grant id).
    consumed_by = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One pending request per requester and subject: a repeat returns the same one.
            models.UniqueConstraint(
                fields=["tenant_id", "kind", "requested_by", "subject"],
                condition=Q(status="pending"),
                name="approvals_one_pending_per_requester_subject",
            ),
            models.CheckConstraint(
                condition=Q(requested_amount__gte=0), name="approvals_requested_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(approved_amount__isnull=True) | Q(approved_amount__gte=0),
                name="approvals_approved_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=Status.values), name="approvals_status_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant_id", "status", "created_at"], name="approvals_tenant_status"
            ),
            models.Index(fields=["status", "expires_at"], name="approvals_status_expiry"),
            models.Index(fields=["tenant_id", "budget_id"], name="approvals_tenant_budget"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"
