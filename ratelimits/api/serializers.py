"""Input serializers of the ratelimits API (SPEC 3)."""

from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, StrictSerializer
from ratelimits.engine.effective import PRIORITIES, exactness_problem, validate_overrides
from ratelimits.models import AlgorithmChoice, FailModeChoice, Mode, ScopeType


def _plain_json(value: Any) -> Any:
    """The platform's parser reads fractions as Decimal; overrides are stored as JSON numbers
    (multipliers, not money), and read back exactly through their shortest text form."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class OverridesField(serializers.Field):
    def to_internal_value(self, data: Any) -> Any:
        if data is not None and not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return _plain_json(data)

    def to_representation(self, value: Any) -> Any:
        return value


MAX_LIMIT_VALUE = 10**12
MAX_WINDOW_SECONDS = 366 * 86_400

SERVER_OWNED = frozenset({"policy_id", "created_at", "updated_at", "usage_factor"})


class PolicyIn(StrictSerializer):
    server_owned = SERVER_OWNED

    tenant_id = ClientIdField(required=False)
    policy_name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, allow_null=True
    )
    scope_type = serializers.ChoiceField(choices=ScopeType.choices, default=ScopeType.TENANT)
    scope_id = ClientIdField(required=False, allow_blank=False)
    resource_type = ClientIdField()
    limit_value = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT_VALUE)
    time_window_seconds = serializers.IntegerField(min_value=1, max_value=MAX_WINDOW_SECONDS)
    algorithm = serializers.ChoiceField(
        choices=AlgorithmChoice.choices, default=AlgorithmChoice.TOKEN_BUCKET
    )
    burst_capacity = serializers.IntegerField(min_value=0, max_value=MAX_LIMIT_VALUE, default=0)
    overrides = OverridesField(required=False, allow_null=True)
    mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.ENFORCE)
    fail_mode = serializers.ChoiceField(choices=FailModeChoice.choices, default=FailModeChoice.OPEN)
    enabled = serializers.BooleanField(default=True)
    version = serializers.IntegerField(min_value=1, required=False)

    def validate_policy_name(self, value: str | None) -> str:
        return value or ""

    def validate_overrides(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        errors = validate_overrides(value)
        if errors:
            raise serializers.ValidationError(errors)
        return dict(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope_type = attrs.get("scope_type", ScopeType.TENANT)
        if scope_type != ScopeType.TENANT and not attrs.get("scope_id"):
            raise serializers.ValidationError({"scope_id": ["required for this scope_type"]})
        algorithm = attrs.get("algorithm")
        limit = attrs.get("limit_value")
        if (
            algorithm == AlgorithmChoice.SLIDING_WINDOW_LOG
            and limit is not None
            and limit > settings.RATELIMIT_SLIDING_LOG_MAX
        ):
            raise serializers.ValidationError(
                {
                    "limit_value": [
                        "a sliding_window_log holds one entry per request: at most "
                        f"{settings.RATELIMIT_SLIDING_LOG_MAX} (RATELIMIT_SLIDING_LOG_MAX)"
                    ]
                }
            )
        if algorithm is not None and limit is not None and "time_window_seconds" in attrs:
            _require_exact(attrs)
        return attrs


def _require_exact(attrs: dict[str, Any]) -> None:
    problem = exactness_problem(
        limit_value=attrs["limit_value"],
        time_window_seconds=attrs["time_window_seconds"],
        algorithm=attrs["algorithm"],
        burst_capacity=attrs.get("burst_capacity") or 0,
        overrides=attrs.get("overrides"),
    )
    if problem is not None:
        raise serializers.ValidationError(
            {"limit_value": [problem], "time_window_seconds": [problem]}
        )


class EmergencyCapacityIn(StrictSerializer):
    extra_requests = serializers.IntegerField(min_value=1, max_value=10**12)
    duration_seconds = serializers.IntegerField(min_value=1, max_value=86_400)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ScopesField(serializers.DictField):
    child = ClientIdField()

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        unknown = sorted(set(value) - {"user", "project", "feature", "tenant"})
        if unknown:
            raise serializers.ValidationError(
                {name: ["unknown scope; expected user, project or feature"] for name in unknown}
            )
        return dict(value)


class CheckIn(StrictSerializer):
    tenant_id = ClientIdField(required=False)
    resource_type = ClientIdField()
    request_count = serializers.IntegerField(min_value=1, max_value=10**9, default=1)
    priority = serializers.ChoiceField(choices=PRIORITIES, default="normal")
    resource_key = ClientIdField(required=False, allow_null=True)
    scope_type = serializers.ChoiceField(choices=ScopeType.choices, required=False)
    scope_id = ClientIdField(required=False)
    scopes = ScopesField(required=False)
    dry_run = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("scope_type" in attrs) != ("scope_id" in attrs):
            raise serializers.ValidationError({"scope_id": ["scope_type and scope_id go together"]})
        return attrs
