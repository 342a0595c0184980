"""Cost metering: the append-only record ledger, its daily rollups, the operators' reference
tables (unit prices, FX rates), shared-cost allocations and detected anomalies.

Records are never edited or deleted: a reversal is a new record, an allocated source is
marked, and `counted` says whether a row adds to totals.
"""

import uuid

from django.db import models
from django.db.models import Q
from uuid6 import uuid7

MONEY = {"max_digits": 28, "decimal_places": 10}


class UnitPrice(models.Model):
    """The price of one unit of a resource type, from `effective_from` until the next row.

    `tenant_id` blank means the operator's default for every tenant; a tenant's own row wins.
    `usage_unit` blank matches any unit.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(
        max_length=128, blank=True, default="", help_text="Blank: every tenant's default."
    )
    resource_type = models.CharField(max_length=128)
    usage_unit = models.CharField(
        max_length=64, blank=True, default="", help_text="Blank: any unit."
    )
    unit_price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("tenant_id", "resource_type", "-effective_from")
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "resource_type", "usage_unit", "effective_from"),
                name="costs_unitprice_unique_effective",
            ),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="costs_unitprice_not_negative"
            ),
        ]
        indexes = [
            models.Index(
                fields=("resource_type", "tenant_id", "effective_from"),
                name="costs_unitprice_lookup",
            )
        ]

    def __str__(self) -> str:
        who = self.tenant_id or "*"
        unit = self.usage_unit or "unit"
        return f"{self.resource_type} {self.unit_price} {self.currency}/{unit} ({who})"


class FxRate(models.Model):
    """1 `base_currency` = `rate` `quote_currency`, from `effective_from` until the next row.

    The inverse pair is derived when only one direction is stored. `tenant_id` blank means
    the operator's rate for every tenant; a tenant's own rate wins.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(
        max_length=128, blank=True, default="", help_text="Blank: every tenant's rate."
    )
    base_currency = models.CharField(max_length=3)
    quote_currency = models.CharField(max_length=3)
    rate = models.DecimalField(**MONEY)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("base_currency", "quote_currency", "-effective_from")
        verbose_name = "FX rate"
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "base_currency", "quote_currency", "effective_from"),
                name="costs_fxrate_unique_effective",
            ),
            models.CheckConstraint(condition=Q(rate__gt=0), name="costs_fxrate_positive"),
        ]
        indexes = [
            models.Index(
                fields=("base_currency", "quote_currency", "effective_from"),
                name="costs_fxrate_lookup",
            )
        ]

    def __str__(self) -> str:
        return f"1 {self.base_currency} = {self.rate} {self.quote_currency}"


def new_record_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562: milliseconds since the epoch, then random bits): ids made one
    after another sort together, so a batch's 1000 inserts into the primary key touch its
    right edge instead of 1000 random pages of an index larger than the buffer cache (a
    batch's insert 86 → 70 ms on the 10 M-record bench table)."""
    return uuid.UUID(int=uuid7().int)


class CostRecord(models.Model):
    """One metered cost. Append-only."""

    class Kind(models.TextChoices):
        USAGE = "usage"
        REVERSAL = "reversal"
        ALLOCATION = "allocation"

    record_id = models.UUIDField(primary_key=True, default=new_record_id, editable=False)
    tenant_id = models.CharField(max_length=128)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USAGE)
    resource_type = models.CharField(max_length=128)
    resource_id = models.CharField(max_length=128, blank=True, default="")
    service_name = models.CharField(max_length=128, blank=True, default="")
    region = models.CharField(max_length=128, blank=True, default="")
    attributed_to_type = models.CharField(max_length=16, default="tenant")
    attributed_to_id = models.CharField(max_length=128)
    cost_amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    usage_quantity = models.DecimalField(**MONEY, null=True, blank=True)
    usage_unit = models.CharField(max_length=64, blank=True, default="")
    unit_price = models.DecimalField(**MONEY, null=True, blank=True)
    operation_context = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField()
    recorded_at = models.DateTimeField()
    reservation_id = models.UUIDField(null=True, blank=True)
    receipt_id = models.UUIDField(null=True, blank=True)
    #: False for reversed originals, their reversal records and allocated sources.
    counted = models.BooleanField(default=True)
    #: on an original: the reversal record that cancelled it.
    reversed_by = models.UUIDField(null=True, blank=True)
    reversal_reason = models.CharField(max_length=500, blank=True, default="")
    #: on a reversal record: the record it cancels.
    reverses = models.UUIDField(null=True, blank=True)
    #: on an allocated source: the allocation that spread it; on an allocated part: its origin.
    allocation_id = models.UUIDField(null=True, blank=True)
    created_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "idempotency_key"),
                condition=Q(idempotency_key__isnull=False),
                name="costs_record_unique_idempotency_key",
            ),
        ]
        indexes = [
            # The list, newest first, and the cursor.
            models.Index(
                fields=("tenant_id", "-timestamp", "-record_id"), name="costs_rec_tenant_time"
            ),
            # The list filtered by a resource type or by who it is attributed to (and the
            # usage-based allocation weights): a rare value would otherwise scan the window
            # (docs/costs-reporting.md, "Indexes"). Service and region filters ride on the
            # tenant-and-time index: every index costs the batch insert.
            models.Index(
                fields=("tenant_id", "resource_type", "timestamp"), name="costs_rec_resource"
            ),
            models.Index(
                fields=("tenant_id", "attributed_to_type", "attributed_to_id", "timestamp"),
                name="costs_rec_attribution",
            ),
            # The few records left out of totals: the list counts them apart from the rollups.
            models.Index(
                fields=("tenant_id", "timestamp"),
                condition=Q(counted=False),
                name="costs_rec_not_counted",
            ),
            models.Index(
                fields=("allocation_id",),
                condition=Q(allocation_id__isnull=False),
                name="costs_rec_allocation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type} {self.cost_amount} {self.currency} @ {self.timestamp:%c}"


class Rollup(models.Model):
    """What every rollup keeps: counted cost per tenant and dimension tuple (the subclasses
    add the period and, for tags, the tag), kept current on every write (costs/rollups.py)."""

    tenant_id = models.CharField(max_length=128)
    resource_type = models.CharField(max_length=128)
    service_name = models.CharField(max_length=128, blank=True, default="")
    region = models.CharField(max_length=128, blank=True, default="")
    attributed_to_type = models.CharField(max_length=16)
    attributed_to_id = models.CharField(max_length=128)
    currency = models.CharField(max_length=3)
    #: Sums of money: 10 more integer digits than one amount, so no sum of records overflows.
    total_cost = models.DecimalField(max_digits=38, decimal_places=10, default=0)
    total_usage = models.DecimalField(max_digits=38, decimal_places=10, default=0)
    record_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


#: The dimensions every rollup keeps (what reports group and filter by), before currency.
DIMENSIONS = ("resource_type", "service_name", "region", "attributed_to_type", "attributed_to_id")
ROLLUP_KEY = (*DIMENSIONS, "currency")


class CostDailyRollup(Rollup):
    """Counted cost per tenant, UTC day and dimension tuple."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "day", *ROLLUP_KEY), name="costs_rollup_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.resource_type}: {self.total_cost}"


class CostHourlyRollup(Rollup):
    """Counted cost per tenant, UTC hour and dimension tuple. Reports read it for the whole
    hours of a day they cover only in part (a window that does not start or end at midnight,
    an FX rate that changes during a day)."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "hour", *ROLLUP_KEY), name="costs_hourly_rollup_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%dT%H} {self.resource_type}: {self.total_cost}"


class CostTagRollup(Rollup):
    """Counted cost per tenant, tag key, UTC day, tag value and dimension tuple: a record adds
    to one row per tag it carries. Tag groupings and a single tag filter read it; records
    without the key are the daily rollup minus these rows."""

    tag_key = models.CharField(max_length=128)
    day = models.DateField()
    tag_value = models.CharField(max_length=256)

    class Meta:
        constraints = [
            # Key before day: a report reads one key over a range of days, one index range.
            models.UniqueConstraint(
                fields=("tenant_id", "tag_key", "day", "tag_value", *ROLLUP_KEY),
                name="costs_tag_rollup_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.tag_key}={self.tag_value}: {self.total_cost}"


class TagSetRollup(models.Model):
    """What the tag-set rollups keep: counted cost per tenant, period, set of tags (a
    record's whole `tags` object) and currency, without the other dimensions. Queries that
    involve tags but no other dimension (cost by team, by env and team, of `env=prod`) read
    them: a handful of rows per period however many keys the query names."""

    tenant_id = models.CharField(max_length=128)
    #: 16 bytes of the sha256 of the tag set's canonical text (`costs.rollups.tag_set_text`):
    #: the unique key (a whole tag set can be longer than an index entry may be).
    tag_hash = models.UUIDField()
    currency = models.CharField(max_length=3)
    tags = models.JSONField(default=dict)
    total_cost = models.DecimalField(max_digits=38, decimal_places=10, default=0)
    total_usage = models.DecimalField(max_digits=38, decimal_places=10, default=0)
    record_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class CostTagSetDailyRollup(TagSetRollup):
    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "day", "tag_hash", "currency"),
                name="costs_tagset_daily_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.tags}: {self.total_cost}"


class CostTagSetHourlyRollup(TagSetRollup):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "hour", "tag_hash", "currency"),
                name="costs_tagset_hourly_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%dT%H} {self.tags}: {self.total_cost}"


class CostAllocation(models.Model):
    """A shared cost spread over targets; its parts are cost records of kind `allocation`."""

    class Rule(models.TextChoices):
        EQUAL = "equal"
        USAGE_BASED = "usage_based"
        WEIGHTED = "weighted"

    allocation_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    rule = models.CharField(max_length=16, choices=Rule.choices)
    total = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    resource_type = models.CharField(max_length=128)
    service_name = models.CharField(max_length=128, blank=True, default="")
    source_filter = models.JSONField(null=True, blank=True)
    source_record_count = models.IntegerField(default=0)
    targets = models.JSONField(default=list)
    shares = models.JSONField(default=list)
    amortize_from = models.DateField(null=True, blank=True)
    amortize_to = models.DateField(null=True, blank=True)
    receipt_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=("tenant_id", "-created_at"), name="costs_alloc_tenant")]

    def __str__(self) -> str:
        return f"{self.rule} {self.total} {self.currency}"


class AmortizationSlice(models.Model):
    """One day's part of an amortized allocation for one target, written on that day."""

    allocation_id = models.UUIDField()
    tenant_id = models.CharField(max_length=128)
    day = models.DateField()
    target_index = models.IntegerField()
    attributed_to_type = models.CharField(max_length=16)
    attributed_to_id = models.CharField(max_length=128)
    amount = models.DecimalField(**MONEY)
    record_id = models.UUIDField(null=True, blank=True)
    written_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("allocation_id", "day", "target_index"), name="costs_slice_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=("day",), condition=Q(record_id__isnull=True), name="costs_slice_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.attributed_to_id}: {self.amount}"


class CostAnomaly(models.Model):
    """A day whose cost deviated more than 10 % from its weekday-adjusted baseline."""

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    anomaly_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    dimension_type = models.CharField(max_length=16)
    dimension_id = models.CharField(max_length=128)
    day = models.DateField()
    currency = models.CharField(max_length=3)
    expected_cost = models.DecimalField(**MONEY)
    observed_cost = models.DecimalField(**MONEY)
    deviation_percentage = models.DecimalField(max_digits=20, decimal_places=4)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    consecutive_days = models.IntegerField(default=1)
    alerted = models.BooleanField(default=False)
    detected_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "cost anomalies"
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "dimension_type", "dimension_id", "day"),
                name="costs_anomaly_unique_day",
            )
        ]
        indexes = [models.Index(fields=("tenant_id", "-day"), name="costs_anomaly_tenant_day")]

    def __str__(self) -> str:
        return f"{self.dimension_type}:{self.dimension_id} {self.day} {self.severity}"
