"""Budgets (SPEC 2): definitions, per-period counters, holds and the spending ledger.

The decision rows are `BudgetPeriod`: one per budget and period, carrying that period's amount,
spent and reserved. Every change to them happens with the row locked (rows in id order), and
the hold itself is a conditional UPDATE guarded by `spent + reserved + x <= budget_amount` on a
hard_stop budget; CHECK constraints keep the amounts from going negative.
"""

import uuid

from django.db import models
from django.db.models import Q

from budgets.periods import PERIOD_TYPES

MONEY = {"max_digits": 28, "decimal_places": 10}


class TargetType(models.TextChoices):
    TENANT = "tenant"
    PROJECT = "project"
    USER = "user"
    FEATURE = "feature"


class Enforcement(models.TextChoices):
    HARD_STOP = "hard_stop"
    SOFT_LIMIT = "soft_limit"
    THROTTLE = "throttle"
    ESCALATE = "escalate"


PERIOD_CHOICES = [(p, p) for p in PERIOD_TYPES]

#: Most specific first: ties for "most restrictive" go to the earlier level.
LEVEL_RANK = {"feature": 0, "user": 1, "project": 2, "tenant": 3}

#: Threshold name → (fraction, bit in BudgetPeriod.signals, alert severity).
THRESHOLDS = {
    "warning_80": ("0.8", 1, "warning"),
    "critical_90": ("0.9", 2, "critical"),
    "exhausted_100": ("1", 4, "critical"),
}
FORECAST_BIT = 8


def default_thresholds() -> dict[str, bool]:
    return dict.fromkeys(THRESHOLDS, True)


def default_notifications() -> dict[str, list]:
    return {"channels": [], "escalation_paths": []}


class Budget(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    budget_name = models.CharField(max_length=255)
    budget_type = models.CharField(max_length=64)
    budget_amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    period_type = models.CharField(max_length=32, choices=PERIOD_CHOICES)
    start_date = models.DateTimeField()
    end_date = models.DateTimeField(null=True, blank=True)
    allocated_to_type = models.CharField(max_length=16, choices=TargetType.choices)
    allocated_to_id = models.CharField(max_length=128)
    enforcement_action = models.CharField(max_length=16, choices=Enforcement.choices)
    thresholds = models.JSONField(default=default_thresholds)
    notifications = models.JSONField(default=default_notifications)
    approval_timeout_hours = models.PositiveIntegerField(default=24)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField()
    #: Soft delete: kept for history, a 404 and absent from lists.
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_amount__gt=0), name="budgets_budget_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gt=models.F("start_date")),
                name="budgets_budget_end_after_start",
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant_id", "allocated_to_type", "allocated_to_id"],
                name="budgets_tenant_target",
                condition=Q(deleted_at__isnull=True),
            ),
            models.Index(fields=["tenant_id", "created_at"], name="budgets_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.budget_name} ({self.allocated_to_type}:{self.allocated_to_id})"

    def threshold_enabled(self, name: str) -> bool:
        value = (self.thresholds or {}).get(name, True)
        return bool(value)


class BudgetPeriod(models.Model):
    """The counter row of one budget in one period: the decision happens here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    budget = models.ForeignKey(Budget, on_delete=models.PROTECT, related_name="periods")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    #: The budget's amount for this period (a PUT changes current and future periods only).
    budget_amount = models.DecimalField(**MONEY)
    spent_amount = models.DecimalField(**MONEY, default=0)
    reserved_amount = models.DecimalField(**MONEY, default=0)
    #: Bits of the thresholds (1, 2, 4) and forecast (8) already signalled in this period.
    signals = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start"], name="budgets_one_period"),
            # The second guard: whatever the code does, amounts never go negative.
            models.CheckConstraint(
                condition=Q(spent_amount__gte=0), name="budgets_period_spent_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved_amount__gte=0), name="budgets_period_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(budget_amount__gt=0), name="budgets_period_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget_id} {self.period_start:%Y-%m-%d}"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class Reservation(models.Model):
    """One allowed check: its estimated cost held on every applicable budget (HoldLine)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE
    )
    resource_type = models.CharField(max_length=128, blank=True, default="")
    estimated_cost = models.DecimalField(**MONEY)
    #: The check's currency; blank: the estimate was taken in each budget's own currency.
    currency = models.CharField(max_length=3, blank=True, default="")
    actual_cost = models.DecimalField(**MONEY, null=True, blank=True)
    requested_by = models.CharField(max_length=255, blank=True, default="")
    approval_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)
    #: For an expired hold: "committed" (at its estimate) or "released".
    expiry_outcome = models.CharField(max_length=16, blank=True, default="")
    #: The cost record that settled it (or, after expiry, replaced the estimate once).
    record_id = models.CharField(max_length=128, blank=True, default="")
    late_settled = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(estimated_cost__gte=0), name="budgets_reservation_estimate_not_neg"
            ),
        ]
        indexes = [
            # Only open holds are indexed: the sweep and the lazy expiry look for overdue ones.
            models.Index(
                fields=["expires_at"],
                name="budgets_active_hold_expiry",
                condition=Q(status="active"),
            ),
            models.Index(
                fields=["tenant_id", "expires_at"],
                name="budgets_active_hold_tenant",
                condition=Q(status="active"),
            ),
            models.Index(fields=["tenant_id", "created_at"], name="budgets_res_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"reservation {self.id} ({self.status})"


class HoldLine(models.Model):
    """The part of a reservation held on one budget's period, in that budget's currency."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    reservation = models.ForeignKey(Reservation, on_delete=models.PROTECT, related_name="lines")
    budget = models.ForeignKey(Budget, on_delete=models.PROTECT, related_name="hold_lines")
    period = models.ForeignKey(BudgetPeriod, on_delete=models.PROTECT, related_name="hold_lines")
    amount = models.DecimalField(**MONEY)
    #: False once released on its own (a budget force-deleted while the hold was open).
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reservation", "budget"], name="budgets_one_line"),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="budgets_hold_line_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} on {self.budget_id}"


class SpendKind(models.TextChoices):
    HOLD_COMMIT = "hold_commit"
    HOLD_EXPIRY = "hold_expiry"
    LATE_RECORD = "late_record"
    COST_RECORD = "cost_record"
    REVERSAL = "reversal"


class SpendEntry(models.Model):
    """The spending ledger: `spent_amount` of a period is the sum of its entries."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    budget = models.ForeignKey(Budget, on_delete=models.PROTECT, related_name="spend_entries")
    period = models.ForeignKey(BudgetPeriod, on_delete=models.PROTECT, related_name="spend_entries")
    #: In the budget's currency; negative for reversals and estimates replaced downwards.
    amount = models.DecimalField(**MONEY)
    kind = models.CharField(max_length=16, choices=SpendKind.choices)
    at = models.DateTimeField()
    reservation_id = models.UUIDField(null=True, blank=True)
    record_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-at"]
        constraints = [
            # A cost record (or reversal) counts once per budget, however often it is applied.
            models.UniqueConstraint(
                fields=["budget", "record_id", "kind"],
                condition=~Q(record_id=""),
                name="budgets_spend_once_per_record",
            ),
        ]
        indexes = [models.Index(fields=["period", "at"], name="budgets_spend_period_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} on {self.budget_id}"


class BudgetSignal(models.Model):
    """A threshold or forecast crossing: the unique row makes it exactly once per budget,
    period and threshold across all processes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    budget = models.ForeignKey(Budget, on_delete=models.PROTECT, related_name="signals")
    period_start = models.DateTimeField()
    #: "warning_80", "critical_90", "exhausted_100" or "forecast".
    kind = models.CharField(max_length=16)
    value = models.DecimalField(**MONEY)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "kind"], name="budgets_signal_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.budget_id} {self.period_start:%Y-%m-%d}"
