"""Serializer building blocks shared by every app's api/."""

from decimal import Decimal
from typing import Any

from rest_framework import serializers

MONEY_MAX_DIGITS = 28
MONEY_DECIMAL_PLACES = 10


class MoneyField(serializers.DecimalField):
    """Money in: a JSON number or a numeric string, exact, at most 10 decimal places."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", MONEY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_DECIMAL_PLACES)
        kwargs.setdefault("coerce_to_string", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ClientIdField(serializers.CharField):
    """Ids that clients bring (tenant, project, user, feature, resource): opaque, ≤128 chars."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 128)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class StrictSerializer(serializers.Serializer):
    """Unknown fields are a 400 that names them; server-owned fields are silently ignored."""

    #: fields the server owns: accepted in a body (e.g. a GET echoed back) and ignored.
    server_owned: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object"]})
        unknown = sorted(set(data) - set(self.fields) - self.server_owned)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field"] for name in unknown})
        known = {k: v for k, v in data.items() if k not in self.server_owned or k in self.fields}
        return super().to_internal_value(known)
