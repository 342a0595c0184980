"""Input serializers (strict: unknown fields are a 400) and output shapes for the schema.

Recording validates by hand (costs.validation) for speed; `RecordIn` documents that input.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer
from costs.validation import ATTRIBUTION_TYPES, parse_instant

RULES = ("equal", "usage_based", "weighted")


class InstantField(serializers.Field):
    """RFC 3339 with an offset, or a bare date meaning 00:00Z (SPEC); stored in UTC."""

    def to_internal_value(self, data: Any) -> datetime:
        errors: dict[str, list[str]] = {}
        parsed = parse_instant(data, "value", errors)
        if errors or parsed is None:
            raise serializers.ValidationError(errors.get("value", ["must be an RFC 3339 instant"]))
        return parsed

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class RecordIn(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    resource_type = ClientIdField()
    cost_amount = MoneyField(required=False, min_value=Decimal(0))
    currency = serializers.CharField(required=False, max_length=3)
    usage_quantity = MoneyField(required=False, min_value=Decimal(0))
    usage_unit = serializers.CharField(required=False, max_length=64)
    resource_id = ClientIdField(required=False)
    service_name = ClientIdField(required=False)
    attributed_to_type = serializers.ChoiceField(ATTRIBUTION_TYPES, required=False)
    attributed_to_id = ClientIdField(required=False)
    operation_context = serializers.DictField(required=False)
    region = ClientIdField(required=False)
    tags = serializers.DictField(child=serializers.CharField(), required=False)
    timestamp = serializers.DateTimeField(required=False)
    reservation_id = serializers.UUIDField(required=False)
    idempotency_key = serializers.CharField(required=False, max_length=255)


class RecordAccepted(serializers.Serializer):
    record_id = serializers.UUIDField()
    recorded_at = serializers.DateTimeField()
    cost_amount = MoneyField()
    currency = serializers.CharField()
    receipt_id = serializers.UUIDField()
    duplicate = serializers.BooleanField()
    correlation_id = serializers.CharField()


class RecordOut(serializers.Serializer):
    record_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(["active", "reversed", "reversal", "allocated"])
    resource_type = serializers.CharField()
    cost_amount = MoneyField()
    currency = serializers.CharField()
    usage_quantity = MoneyField(allow_null=True)
    attributed_to_type = serializers.CharField()
    attributed_to_id = serializers.CharField()
    timestamp = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()
    receipt_id = serializers.UUIDField(allow_null=True)


class BatchItemOut(serializers.Serializer):
    index = serializers.IntegerField()
    idempotency_key = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(["created", "duplicate", "failed"])
    record_id = serializers.UUIDField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)


class BatchOut(serializers.Serializer):
    batch_id = serializers.UUIDField()
    processed_count = serializers.IntegerField()
    duplicate_count = serializers.IntegerField()
    failed_count = serializers.IntegerField()
    results = BatchItemOut(many=True)
    receipt_id = serializers.UUIDField()
    correlation_id = serializers.CharField()


class ReportOut(serializers.Serializer):
    report_id = serializers.UUIDField()
    report_type = serializers.CharField()
    period = serializers.DictField()
    total_cost = MoneyField()
    currency = serializers.CharField()
    breakdown = serializers.ListField(child=serializers.DictField())
    correlation_id = serializers.CharField()


class ReverseIn(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    reason = serializers.CharField(max_length=500)


class TargetIn(StrictSerializer):
    attributed_to_type = serializers.ChoiceField(ATTRIBUTION_TYPES)
    attributed_to_id = ClientIdField(required=False, allow_blank=False)
    weight = MoneyField(required=False, min_value=Decimal(0))


class SourceFilterIn(StrictSerializer):
    start_time = InstantField(required=False)
    end_time = InstantField(required=False)
    resource_type = ClientIdField(required=False)
    service_name = ClientIdField(required=False)
    region = ClientIdField(required=False)
    attributed_to_type = serializers.ChoiceField(ATTRIBUTION_TYPES, required=False)
    attributed_to_id = ClientIdField(required=False)
    tag = serializers.ListField(child=serializers.CharField(max_length=400), required=False)


class AllocationIn(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    rule = serializers.ChoiceField(RULES)
    cost_amount = MoneyField(required=False, min_value=Decimal(0))
    currency = serializers.CharField(required=False, max_length=3, min_length=3)
    resource_type = ClientIdField(required=False)
    service_name = ClientIdField(required=False)
    source_filter = SourceFilterIn(required=False)
    targets = TargetIn(many=True)
    usage_resource_type = ClientIdField(required=False)
    usage_start = InstantField(required=False)
    usage_end = InstantField(required=False)
    amortize_from = serializers.DateField(required=False)
    amortize_to = serializers.DateField(required=False)
    timestamp = InstantField(required=False)

    def validate_currency(self, value: str) -> str:
        if not value.isalpha() or not value.isascii():
            raise serializers.ValidationError("must be an ISO 4217 code")
        return value.upper()

    def validate_targets(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise serializers.ValidationError("at least one target")
        if len(value) > 1000:
            raise serializers.ValidationError("at most 1000 targets")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_amount = attrs.get("cost_amount") is not None
        has_filter = attrs.get("source_filter") is not None
        if has_amount == has_filter:
            raise serializers.ValidationError(
                {"cost_amount": ["give either cost_amount or source_filter"]}
            )
        if has_amount and not attrs.get("resource_type"):
            raise serializers.ValidationError({"resource_type": ["required with cost_amount"]})
        if attrs["rule"] == "usage_based" and not attrs.get("usage_resource_type"):
            raise serializers.ValidationError({"usage_resource_type": ["required for usage_based"]})
        if attrs["rule"] == "weighted":
            for i, target in enumerate(attrs["targets"]):
                if target.get("weight") is None:
                    raise serializers.ValidationError(
                        {"targets": [f"item {i}: weight is required for weighted"]}
                    )
        amortize = (attrs.get("amortize_from"), attrs.get("amortize_to"))
        if (amortize[0] is None) != (amortize[1] is None):
            raise serializers.ValidationError(
                {"amortize_to": ["amortize_from and amortize_to go together"]}
            )
        if amortize[0] is not None and amortize[1] <= amortize[0]:
            raise serializers.ValidationError({"amortize_to": ["must be after amortize_from"]})
        if amortize[0] is not None and (amortize[1] - amortize[0]).days > 3660:
            raise serializers.ValidationError({"amortize_to": ["at most 10 years"]})
        usage = (attrs.get("usage_start"), attrs.get("usage_end"))
        if usage[0] and usage[1] and usage[1] <= usage[0]:
            raise serializers.ValidationError({"usage_end": ["must be after usage_start"]})
        return attrs


class PaginationOut(serializers.Serializer):
    page = serializers.IntegerField(allow_null=True)
    page_size = serializers.IntegerField()
    total_count = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class AggregatedOut(serializers.Serializer):
    total_cost = serializers.DecimalField(max_digits=38, decimal_places=10, coerce_to_string=False)
    total_usage = serializers.DecimalField(
        max_digits=38, decimal_places=10, coerce_to_string=False, allow_null=True
    )
    record_count = serializers.IntegerField()
    currency = serializers.CharField()


class RecordsPageOut(serializers.Serializer):
    records = RecordOut(many=True)
    pagination = PaginationOut()
    aggregated = AggregatedOut()
    groups = serializers.ListField(child=serializers.DictField(), required=False)
    next_cursor = serializers.CharField(allow_null=True)
