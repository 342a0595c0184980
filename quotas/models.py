"""Quotas (SPEC 5): an allocation of a resource to a target for one period, and its usage ledger.

Each period is its own row; a renewal creates the next row and links it by `renewed_from`.
The database stands behind the services: used ≤ allocated + burst is a CHECK, one successor per
quota is a unique constraint, and on PostgreSQL two live quotas of the same target and resource
type cannot overlap in time (an exclusion constraint, created in the migration).
"""

import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.db import models
from django.db.models import F, Q

MONEY = {"max_digits": 28, "decimal_places": 10}
RATIO_PLACES = Decimal("0.0000000001")


def utilization_ratio(used: Decimal, allocated: Decimal) -> Decimal:
    """used ÷ allocated to 10 places, half-even. Wide enough for any pair of amounts: with
    0.0000000001 allocated and a quadrillion of burst used the ratio has 26 integer digits,
    beyond the default context's 28 significant digits once 10 places are added."""
    if allocated <= 0:
        return Decimal(0)
    with localcontext(prec=80):
        return (used / allocated).quantize(RATIO_PLACES, rounding=ROUND_HALF_EVEN)


class AllocationType(models.TextChoices):
    TENANT = "tenant"
    PROJECT = "project"
    USER = "user"
    FEATURE = "feature"


class RenewalStrategy(models.TextChoices):
    SAME = "same"
    USAGE_BASED = "usage_based"


def renewal_lead(period_start: datetime, period_end: datetime) -> timedelta:
    """How long before its end a quota renews: min(24 h, half the period)."""
    return min(timedelta(hours=24), (period_end - period_start) / 2)


class Quota(models.Model):
    quota_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    resource_type = models.CharField(max_length=128)
    allocation_type = models.CharField(max_length=16, choices=AllocationType.choices)
    allocated_to_id = models.CharField(max_length=128)
    allocated_amount = models.DecimalField(**MONEY)
    used_amount = models.DecimalField(**MONEY, default=Decimal(0))
    max_burst_amount = models.DecimalField(**MONEY, default=Decimal(0))
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    auto_renew = models.BooleanField(default=True)
    renewal_strategy = models.CharField(
        max_length=16, choices=RenewalStrategy.choices, default=RenewalStrategy.SAME
    )
    #: how the amount was chosen: null (explicit), {"type": "dynamic"}, {"type": "reserved", ...},
    #: or the pool split it came from ({"type": "fair_share", "batch_id": ...}).
    strategy = models.JSONField(null=True, blank=True)
    renewed_from = models.UUIDField(null=True, blank=True)
    #: the successor, set in the same transaction that creates it (the claim on renewal).
    renewed_to = models.UUIDField(null=True, blank=True)
    renewal_due_at = models.DateTimeField()
    renewal_attempts = models.PositiveIntegerField(default=0)
    renewal_last_error = models.CharField(max_length=500, blank=True, default="")
    #: a batch item's own key, unique per tenant while the quota exists.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    #: each threshold fires once per quota (= per period): set by a conditional UPDATE.
    warned_80_at = models.DateTimeField(null=True, blank=True)
    warned_90_at = models.DateTimeField(null=True, blank=True)
    exhausted_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-quota_id"]
        indexes = [
            models.Index(
                fields=["tenant_id", "resource_type", "allocation_type", "allocated_to_id"],
                name="quota_target_idx",
            ),
            models.Index(fields=["tenant_id", "-created_at"], name="quota_tenant_created_idx"),
            models.Index(
                fields=["renewal_due_at"],
                name="quota_renewal_due_idx",
                condition=Q(auto_renew=True, renewed_to__isnull=True, deleted_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(allocated_amount__gt=0), name="quota_allocated_positive"
            ),
            models.CheckConstraint(condition=Q(used_amount__gte=0), name="quota_used_not_negative"),
            models.CheckConstraint(
                condition=Q(max_burst_amount__gte=0), name="quota_burst_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(used_amount__lte=F("allocated_amount") + F("max_burst_amount")),
                name="quota_used_within_allocation_and_burst",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=F("period_start")), name="quota_period_not_empty"
            ),
            models.UniqueConstraint(
                fields=["renewed_from"],
                condition=Q(renewed_from__isnull=False),
                name="quota_one_successor",
            ),
            models.UniqueConstraint(
                fields=["tenant_id", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, deleted_at__isnull=True),
                name="quota_batch_item_key",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.resource_type} for {self.allocation_type}:{self.allocated_to_id} "
            f"[{self.period_start:%Y-%m-%d %H:%M} - {self.period_end:%Y-%m-%d %H:%M})"
        )

    @property
    def capacity(self) -> Decimal:
        return self.allocated_amount + self.max_burst_amount

    @property
    def remaining_amount(self) -> Decimal:
        return max(self.capacity - self.used_amount, Decimal(0))

    @property
    def burst_used(self) -> Decimal:
        return max(self.used_amount - self.allocated_amount, Decimal(0))

    @property
    def utilization_ratio(self) -> Decimal:
        return utilization_ratio(self.used_amount, self.allocated_amount)

    @property
    def duration(self) -> timedelta:
        return self.period_end - self.period_start


class QuotaUsage(models.Model):
    """The usage ledger: one row per admitted consumption, written in the same transaction as
    the change to `Quota.used_amount`, so the rows of a quota always sum to it."""

    usage_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    quota_id = models.UUIDField()
    resource_type = models.CharField(max_length=128)
    amount = models.DecimalField(**MONEY)
    used_after = models.DecimalField(**MONEY)
    operation_type = models.CharField(max_length=128, blank=True, default="")
    resource_id = models.CharField(max_length=128, blank=True, default="")
    principal = models.CharField(max_length=255, blank=True, default="")
    receipt_id = models.UUIDField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "quota usage"
        verbose_name_plural = "quota usage history"
        indexes = [
            models.Index(fields=["quota_id", "created_at"], name="quota_usage_quota_idx"),
            models.Index(fields=["tenant_id", "-created_at"], name="quota_usage_tenant_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="quota_usage_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} of {self.resource_type} on {self.quota_id}"
