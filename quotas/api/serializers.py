"""Input serializers of the quotas API, and the one output shape of a quota."""

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer
from quotas.allocation import MAX_AMOUNT, STRATEGIES
from quotas.models import AllocationType, Quota, RenewalStrategy

#: instants outside these years are refused, so that period arithmetic never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
MAX_BATCH = 100


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
    allocations = serializers.ListField(
        child=serializers.JSONField(), min_length=1, allow_empty=False
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
        "utilization_ratio": (quota.used_amount / allocated).quantize(Decimal("1e-10")),
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
