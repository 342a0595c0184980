"""Input serializers (strict: unknown fields are a 400 naming them) and the output shapes."""

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer
from budgets.models import THRESHOLDS, Budget, Enforcement, HoldLine, Reservation, TargetType
from budgets.periods import PERIOD_TYPES

CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_HOLD_TTL = 86_400


class InstantField(serializers.Field):
    """An RFC 3339 instant (a bare date means 00:00Z; no offset is read as UTC), kept in UTC."""

    default_error_messages = {"invalid": "must be an RFC 3339 instant or a date"}

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or len(data) > 64:
            self.fail("invalid")
        try:
            parsed = parse_datetime(data)
            if parsed is None:
                day = parse_date(data)
                if day is None:
                    self.fail("invalid")
                parsed = datetime.combine(day, time(0), tzinfo=UTC)
        except ValueError:
            self.fail("invalid")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            parsed = parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("invalid")
        # Periods are computed a year ahead; keep well inside what datetime can represent.
        if not 1970 <= parsed.year <= 9000:
            raise serializers.ValidationError("must be between the years 1970 and 9000")
        return parsed

    def to_representation(self, value: datetime | date) -> str:
        return value.isoformat()


class CurrencyField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not CURRENCY.match(value):
            raise serializers.ValidationError("must be an ISO 4217 code such as USD")
        return value


class ThresholdsField(serializers.Field):
    def to_internal_value(self, data: Any) -> dict[str, bool]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        unknown = sorted(set(data) - set(THRESHOLDS))
        if unknown:
            raise serializers.ValidationError(f"unknown thresholds: {', '.join(unknown)}")
        if any(not isinstance(v, bool) for v in data.values()):
            raise serializers.ValidationError("each threshold is true or false")
        return dict(data)

    def to_representation(self, value: Any) -> Any:
        return value


class NotificationsField(serializers.Field):
    def to_internal_value(self, data: Any) -> dict[str, list[Any]]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        unknown = sorted(set(data) - {"channels", "escalation_paths"})
        if unknown:
            raise serializers.ValidationError(f"unknown keys: {', '.join(unknown)}")
        result: dict[str, list[Any]] = {}
        for key in ("channels", "escalation_paths"):
            value = data.get(key, [])
            if not isinstance(value, list) or len(value) > 50:
                raise serializers.ValidationError(f"{key} must be a list of at most 50 entries")
            for entry in value:
                if not isinstance(entry, str | dict) or len(str(entry)) > 1000:
                    raise serializers.ValidationError(f"{key} entries are strings or objects")
            result[key] = value
        return result

    def to_representation(self, value: Any) -> Any:
        return value


SERVER_OWNED = frozenset(
    {"budget_id", "created_at", "created_by", "updated_at", "current_period", "deleted_at"}
)


class BudgetCreateInput(StrictSerializer):
    server_owned = SERVER_OWNED | {"version"}

    tenant_id = ClientIdField(required=False)
    budget_name = serializers.CharField(max_length=255)
    budget_type = serializers.CharField(max_length=64, required=False, allow_blank=True)
    budget_amount = MoneyField()
    currency = CurrencyField(required=False)
    period_type = serializers.ChoiceField(choices=PERIOD_TYPES)
    start_date = InstantField(required=False, allow_null=True)
    end_date = InstantField(required=False, allow_null=True)
    allocated_to_type = serializers.ChoiceField(choices=TargetType.values)
    allocated_to_id = ClientIdField(required=False, allow_blank=True, allow_null=True)
    enforcement_action = serializers.ChoiceField(
        choices=Enforcement.values, required=False, default=Enforcement.HARD_STOP
    )
    thresholds = ThresholdsField(required=False)
    notifications = NotificationsField(required=False)
    approval_timeout_hours = serializers.IntegerField(
        required=False, min_value=1, max_value=24 * 365
    )

    def validate_budget_amount(self, value: Decimal) -> Decimal:
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        return value


class BudgetReplaceInput(BudgetCreateInput):
    """PUT: the whole definition again, with `version` (or If-Match) as its precondition."""

    server_owned = SERVER_OWNED | {"tenant_id"}

    version = serializers.IntegerField(required=False, min_value=1)
    period_type = serializers.ChoiceField(choices=PERIOD_TYPES, required=False)
    allocated_to_type = serializers.ChoiceField(choices=TargetType.values, required=False)


class BudgetListQuery(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    budget_type = serializers.CharField(required=False, max_length=64)
    allocated_to_type = serializers.ChoiceField(choices=TargetType.values, required=False)
    allocated_to_id = ClientIdField(required=False)
    active_only = serializers.BooleanField(required=False, default=False)
    page = serializers.CharField(required=False)
    page_size = serializers.CharField(required=False)


class PageQuery(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    page = serializers.CharField(required=False)
    page_size = serializers.CharField(required=False)


class DeleteQuery(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    force = serializers.BooleanField(required=False, default=False)


def _context_value(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise serializers.ValidationError({key: ["must be a string"]})
    text = str(value)
    if len(text) > 128:
        raise serializers.ValidationError({key: ["at most 128 characters"]})
    return text


class OperationContextField(serializers.Field):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        if len(data) > 100:
            raise serializers.ValidationError("at most 100 keys")
        context = dict(data)
        for key in ("project_id", "user_id", "feature_id"):
            if context.get(key) is not None:
                context[key] = _context_value(context[key], key)
        return context

    def to_representation(self, value: Any) -> Any:
        return value


class CheckItemInput(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    resource_type = ClientIdField(required=False, allow_blank=True)
    estimated_cost = MoneyField(min_value=Decimal(0))
    currency = CurrencyField(required=False, allow_null=True)
    allocated_to_type = serializers.ChoiceField(
        choices=TargetType.values, required=False, allow_null=True
    )
    allocated_to_id = ClientIdField(required=False, allow_null=True, allow_blank=True)
    operation_context = OperationContextField(required=False)
    approval_id = serializers.UUIDField(required=False, allow_null=True)
    dry_run = serializers.BooleanField(required=False, default=False)
    hold_ttl_seconds = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_HOLD_TTL, default=900
    )


class CheckBatchInput(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    checks = serializers.ListField(child=serializers.JSONField(), min_length=1)
    dry_run = serializers.BooleanField(required=False, default=False)


class CommitInput(StrictSerializer):
    server_owned = frozenset({"tenant_id"})
    actual_cost = MoneyField(min_value=Decimal(0))
    currency = CurrencyField(required=False)


class ExtendInput(StrictSerializer):
    server_owned = frozenset({"tenant_id"})
    hold_ttl_seconds = serializers.IntegerField(min_value=1, max_value=MAX_HOLD_TTL)


class EmptyInput(StrictSerializer):
    server_owned = frozenset({"tenant_id"})


# --- Output ---------------------------------------------------------------------------------


def render_budget(budget: Budget, current: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "budget_id": budget.pk,
        "tenant_id": budget.tenant_id,
        "budget_name": budget.budget_name,
        "budget_type": budget.budget_type,
        "budget_amount": budget.budget_amount,
        "currency": budget.currency,
        "period_type": budget.period_type,
        "start_date": budget.start_date,
        "end_date": budget.end_date,
        "allocated_to_type": budget.allocated_to_type,
        "allocated_to_id": budget.allocated_to_id,
        "enforcement_action": budget.enforcement_action,
        "thresholds": budget.thresholds,
        "notifications": budget.notifications,
        "approval_timeout_hours": budget.approval_timeout_hours,
        "version": budget.version,
        "created_at": budget.created_at,
        "created_by": budget.created_by,
        "updated_at": budget.updated_at,
        "current_period": current,
    }


def render_reservation(
    reservation: Reservation, lines: list[HoldLine], receipt_id: Any = None
) -> dict[str, Any]:
    body = {
        "reservation_id": reservation.pk,
        "tenant_id": reservation.tenant_id,
        "status": reservation.status,
        "resource_type": reservation.resource_type,
        "estimated_cost": reservation.estimated_cost,
        "currency": reservation.currency or None,
        "actual_cost": reservation.actual_cost,
        "created_at": reservation.created_at,
        "reservation_expires_at": reservation.expires_at,
        "settled_at": reservation.settled_at,
        "expiry_outcome": reservation.expiry_outcome or None,
        "holds": [
            {"budget_id": line.budget_id, "amount": line.amount, "active": line.active}
            for line in lines
        ],
    }
    if receipt_id is not None:
        body["receipt_id"] = receipt_id
    return body
