"""Input serializers of the quotas API, and the one output shape of a quota."""

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer
from quotas.allocation import MAX_AMOUNT, STRATEGIES
from quotas.models import AllocationType, Quota, RenewalStrategy

#: instants outside these years are refused, so that period arithmetic never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
MAX_BATCH = 100


@extend_schema_field(OpenApiTypes.DATETIME)
class InstantField(serializers.Field):
    """An RFC 3339 instant, normalised to UTC; a bare date means 00:00Z (SPEC)."""

    default_error_messages = {
        "invalid": "Expected an RFC 3339 instant (e.g. 2025-01-31T00:00:00Z) or a date.",
        "range": "Must be between 1970-01-01 and 3000-01-01.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or len(data) > 64:
            self.fail("invalid")
        value: datetime | None = None
        try:
            value = parse_datetime(data)
            if value is None:
                day = parse_date(data)
                if day is not None:
                    value = datetime.combine(day, time(0), tzinfo=UTC)
        except (ValueError, OverflowError):
            value = None
        if value is None:
            self.fail("invalid")
        assert value is not None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except (ValueError, OverflowError):
            self.fail("range")
        if not EARLIEST <= value < LATEST:
            self.fail("range")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise serializers.ValidationError("Must be greater than 0.")
    return value


class StrategyIn(StrictSerializer):
    """`{"type": "dynamic"}` or `{"type": "reserved", "amount": n}` (no pool needed)."""

    type = serializers.ChoiceField(choices=["dynamic", "reserved"])
    amount = MoneyField(max_value=MAX_AMOUNT, required=False, validators=[positive])

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "reserved" and "amount" not in attrs:
            raise serializers.ValidationError({"amount": ["Required for a reserved strategy."]})
        if attrs["type"] == "dynamic" and "amount" in attrs:
            raise serializers.ValidationError({"amount": ["A dynamic strategy takes no amount."]})
        return attrs


#: fields a client may echo from a read; ignored on input.
READ_ONLY_FIELDS = frozenset(
    {
        "quota_id",
        "used_amount",
        "created_at",
        "updated_at",
        "renewed_from",
        "renewed_to",
        "allocated_at",
        "remaining_amount",
        "burst_used",
        "utilization_ratio",
        "receipt_id",
        "correlation_id",
        "strategy_applied",
    }
)


class AllocateIn(StrictSerializer):
    server_owned = READ_ONLY_FIELDS | {"version"}
    tenant_id = ClientIdField(required=False, allow_null=True)
    resource_type = ClientIdField()
    allocation_type = serializers.ChoiceField(
        choices=AllocationType.choices, default=AllocationType.TENANT
    )
    allocated_to_id = ClientIdField(required=False, allow_null=True)
    allocated_amount = MoneyField(
        max_value=MAX_AMOUNT, required=False, allow_null=True, validators=[positive]
    )
    strategy = StrategyIn(required=False, allow_null=True)
    max_burst_amount = MoneyField(max_value=MAX_AMOUNT, default=Decimal(0), min_value=Decimal(0))
    period_start = InstantField(required=False, allow_null=True)
    period_end = InstantField(required=False, allow_null=True)
    auto_renew = serializers.BooleanField(default=True)
    renewal_strategy = serializers.ChoiceField(
        choices=RenewalStrategy.choices, default=RenewalStrategy.SAME
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_amount = attrs.get("allocated_amount") is not None
        has_strategy = attrs.get("strategy") is not None
        if has_amount == has_strategy:
            raise serializers.ValidationError(
                {"allocated_amount": ["Give either allocated_amount or strategy."]}
            )
        start, end = attrs.get("period_start"), attrs.get("period_end")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"period_end": ["Must be after period_start."]})
        return attrs


class BatchItemIn(AllocateIn):
    idempotency_key = serializers.CharField(max_length=255)


class BatchListIn(StrictSerializer):
    tenant_id = ClientIdField(required=False, allow_null=True)
    #: any JSON value per item (a null too): each item is validated on its own, and an item
    #: that is not a valid allocation is a `failed` result, not a 400 for the whole batch.
    allocations = serializers.ListField(
        child=serializers.JSONField(allow_null=True), min_length=1, allow_empty=False
    )


class TierField(serializers.Field):
    """A tier as 1 or "tier1"."""

    default_error_messages = {"invalid": "Expected a tier number (1, 2, 3...) or 'tier1'."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and data.lower().startswith("tier"):
            data = data[4:]
        if isinstance(data, bool):
            self.fail("invalid")
        try:
            tier = int(str(data))
        except (TypeError, ValueError):
            self.fail("invalid")
        if not 1 <= tier <= 100:
            self.fail("invalid")
        return tier

    def to_representation(self, value: int) -> int:
        return value


class PoolEntityIn(StrictSerializer):
    tenant_id = ClientIdField(required=False, allow_null=True)
    allocation_type = serializers.ChoiceField(
        choices=AllocationType.choices, default=AllocationType.TENANT
    )
    allocated_to_id = ClientIdField(required=False, allow_null=True)
    tier = TierField(required=False, allow_null=True)
    reserved_amount = MoneyField(
        max_value=MAX_AMOUNT, required=False, allow_null=True, validators=[positive]
    )

    def validate_reserved_amount(self, value: Decimal | None) -> Decimal | None:
        if value is not None and value != value.to_integral_value():
            raise serializers.ValidationError("Must be a whole number of units.")
        return value


class PoolIn(StrictSerializer):
    tenant_id = ClientIdField(required=False, allow_null=True)
    resource_type = ClientIdField()
    pool_amount = MoneyField(max_value=MAX_AMOUNT, validators=[positive])
    strategy = serializers.ChoiceField(choices=list(STRATEGIES))
    period_start = InstantField(required=False, allow_null=True)
    period_end = InstantField(required=False, allow_null=True)
    entities = PoolEntityIn(many=True, allow_empty=False)
    tier_shares = serializers.DictField(
        child=MoneyField(max_value=MAX_AMOUNT, min_value=Decimal(0)),
        required=False,
        allow_null=True,
    )
    auto_renew = serializers.BooleanField(default=True)
    renewal_strategy = serializers.ChoiceField(
        choices=RenewalStrategy.choices, default=RenewalStrategy.SAME
    )

    def validate_pool_amount(self, value: Decimal) -> Decimal:
        if value != value.to_integral_value():
            raise serializers.ValidationError("Must be a whole number of units.")
        return value

    def validate_tier_shares(self, value: dict[str, Decimal] | None) -> dict[int, Decimal] | None:
        if value is None:
            return None
        tiers: dict[int, Decimal] = {}
        field = TierField()
        for key, share in value.items():
            try:
                tiers[field.to_internal_value(key)] = share
            except serializers.ValidationError as exc:
                raise serializers.ValidationError(f"Unknown tier {key!r}.") from exc
        if not tiers or sum(tiers.values(), Decimal(0)) <= 0:
            raise serializers.ValidationError("At least one tier needs a positive share.")
        return tiers

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("period_start"), attrs.get("period_end")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"period_end": ["Must be after period_start."]})
        return attrs


class QuotaUpdateIn(StrictSerializer):
    server_owned = READ_ONLY_FIELDS | {"tenant_id", "strategy"}
    allocated_amount = MoneyField(max_value=MAX_AMOUNT, required=False, validators=[positive])
    max_burst_amount = MoneyField(max_value=MAX_AMOUNT, required=False, min_value=Decimal(0))
    auto_renew = serializers.BooleanField(required=False)
    period_end = InstantField(required=False)
    renewal_strategy = serializers.ChoiceField(choices=RenewalStrategy.choices, required=False)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    # Accepted when unchanged, so that a client can send back what it read.
    resource_type = ClientIdField(required=False)
    allocation_type = serializers.ChoiceField(choices=AllocationType.choices, required=False)
    allocated_to_id = ClientIdField(required=False)
    period_start = InstantField(required=False)


class ConsumeIn(StrictSerializer):
    tenant_id = ClientIdField(required=False, allow_null=True)
    resource_type = ClientIdField()
    allocation_type = serializers.ChoiceField(
        choices=AllocationType.choices, default=AllocationType.TENANT
    )
    allocated_to_id = ClientIdField(required=False, allow_null=True)
    amount = MoneyField(max_value=MAX_AMOUNT, validators=[positive])
    operation_type = serializers.CharField(
        max_length=128, required=False, allow_blank=True, default=""
    )
    resource_id = ClientIdField(required=False, allow_blank=True, default="")
    dry_run = serializers.BooleanField(default=False)


def bool_param(raw: str | None, name: str) -> bool:
    from budgeting_site.platform.errors import ValidationFailed

    if raw is None or raw == "":
        return False
    lowered = raw.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValidationFailed(f"{name} must be true or false", details={name: ["must be a boolean"]})


def render_instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_quota(quota: Quota) -> dict[str, Any]:
    allocated = quota.allocated_amount
    return {
        "quota_id": str(quota.pk),
        "tenant_id": quota.tenant_id,
        "resource_type": quota.resource_type,
        "allocation_type": quota.allocation_type,
        "allocated_to_id": quota.allocated_to_id,
        "allocated_amount": allocated,
        "used_amount": quota.used_amount,
        "max_burst_amount": quota.max_burst_amount,
        "remaining_amount": quota.remaining_amount,
        "burst_used": quota.burst_used,
        "utilization_ratio": quota.utilization_ratio,
        "period_start": render_instant(quota.period_start),
        "period_end": render_instant(quota.period_end),
        "auto_renew": quota.auto_renew,
        "renewal_strategy": quota.renewal_strategy,
        "strategy": quota.strategy,
        "renewed_from": str(quota.renewed_from) if quota.renewed_from else None,
        "renewed_to": str(quota.renewed_to) if quota.renewed_to else None,
        "created_at": render_instant(quota.created_at),
        "updated_at": render_instant(quota.updated_at),
        "version": quota.version,
    }


# --- Output shapes: what the answers are, for the OpenAPI schema ------------------------------
# The views render with `render_quota` and dicts; these describe exactly those dicts (the
# tests validate real answers against the generated schema).


def _amount(**kwargs: Any) -> serializers.DecimalField:
    """An exact decimal rendered as a JSON number (no bounds: ratios may exceed any money)."""
    return serializers.DecimalField(
        max_digits=None, decimal_places=None, coerce_to_string=False, **kwargs
    )


def _instant(**kwargs: Any) -> serializers.DateTimeField:
    return serializers.DateTimeField(**kwargs)


class QuotaOut(serializers.Serializer):
    quota_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    resource_type = serializers.CharField()
    allocation_type = serializers.ChoiceField(choices=AllocationType.choices)
    allocated_to_id = serializers.CharField()
    allocated_amount = _amount()
    used_amount = _amount()
    max_burst_amount = _amount()
    remaining_amount = _amount(help_text="allocated + burst - used, never below 0")
    burst_used = _amount(help_text="max(0, used - allocated)")
    utilization_ratio = _amount(help_text="used ÷ allocated")
    period_start = _instant()
    period_end = _instant()
    auto_renew = serializers.BooleanField()
    renewal_strategy = serializers.ChoiceField(choices=RenewalStrategy.choices)
    strategy = serializers.DictField(
        allow_null=True, help_text="how the amount was chosen; null for an explicit amount"
    )
    renewed_from = serializers.UUIDField(allow_null=True)
    renewed_to = serializers.UUIDField(allow_null=True)
    created_at = _instant()
    updated_at = _instant()
    version = serializers.IntegerField()


class QuotaPaginationOut(serializers.Serializer):
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_count = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class QuotaListOut(serializers.Serializer):
    quotas = QuotaOut(many=True)
    pagination = QuotaPaginationOut()


class QuotaAllocatedOut(serializers.Serializer):
    quota_id = serializers.UUIDField()
    allocated_at = _instant()
    allocated_amount = _amount()
    resource_type = serializers.CharField()
    allocation_type = serializers.ChoiceField(choices=AllocationType.choices)
    allocated_to_id = serializers.CharField()
    used_amount = _amount()
    max_burst_amount = _amount()
    period_start = _instant()
    period_end = _instant()
    strategy = serializers.DictField(allow_null=True)
    receipt_id = serializers.UUIDField()
    correlation_id = serializers.CharField()


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(created|duplicate|failed)$",
        "description": "created | duplicate | failed",
    }
)
class BatchItemStatusField(serializers.CharField):
    """A pattern, not an enum: the cost batch's status has the same choices, and a shared enum
    component would be renamed (drf-spectacular turns every `enum` into a component)."""


class QuotaBatchResultOut(serializers.Serializer):
    index = serializers.IntegerField()
    idempotency_key = serializers.CharField(allow_null=True)
    status = BatchItemStatusField()
    quota_id = serializers.UUIDField(allow_null=True)
    allocated_amount = _amount(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    receipt_id = serializers.UUIDField()


class QuotaBatchOut(serializers.Serializer):
    """The list form: each item on its own."""

    batch_id = serializers.UUIDField()
    processed_count = serializers.IntegerField(help_text="items created")
    duplicate_count = serializers.IntegerField()
    failed_count = serializers.IntegerField()
    results = QuotaBatchResultOut(many=True)
    receipt_id = serializers.UUIDField()
    correlation_id = serializers.CharField()


class QuotaPoolAllocationOut(serializers.Serializer):
    index = serializers.IntegerField()
    allocation_type = serializers.ChoiceField(choices=AllocationType.choices)
    allocated_to_id = serializers.CharField()
    tier = serializers.IntegerField(allow_null=True)
    reserved_amount = _amount(allow_null=True)
    allocated_amount = _amount()
    quota_id = serializers.UUIDField()
    receipt_id = serializers.UUIDField()


class QuotaPoolOut(serializers.Serializer):
    """The pool form: one pool split over entities, all or nothing."""

    batch_id = serializers.UUIDField()
    resource_type = serializers.CharField()
    strategy = serializers.ChoiceField(choices=list(STRATEGIES))
    pool_amount = _amount()
    total_allocated = _amount()
    period_start = _instant()
    period_end = _instant()
    allocations = QuotaPoolAllocationOut(many=True)
    receipt_id = serializers.UUIDField()
    correlation_id = serializers.CharField()


class QuotaDecisionOut(serializers.Serializer):
    """The answer of `/quotas/consume` and `/quotas/check`: the quota as it is after the
    request (as it would be, for a check). With no quota for the target, `allowed` is true and
    every quota field is null."""

    allowed = serializers.BooleanField()
    quota_id = serializers.UUIDField(allow_null=True)
    used_amount = _amount(allow_null=True)
    allocated_amount = _amount(allow_null=True)
    max_burst_amount = _amount(allow_null=True)
    remaining_amount = _amount(allow_null=True)
    burst_used = _amount(allow_null=True)
    utilization_ratio = _amount(allow_null=True)
    warning_level = serializers.ChoiceField(
        choices=["normal", "warning", "critical", "exhausted"], allow_null=True
    )
    period_end = _instant(allow_null=True)
    reason = serializers.ChoiceField(choices=["QUOTA_EXHAUSTED"], allow_null=True)
    receipt_id = serializers.UUIDField()
    correlation_id = serializers.CharField()
