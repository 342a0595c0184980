"""Serializer building blocks shared by every app's api/."""

import copy
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


def _is_leaf(field: serializers.Field) -> bool:
    """A field that holds no other field (no child, not a nested serializer) and no mutable
    argument (a default {}): its state after __init__ is values that validation only reads
    (its validators, error messages, choices), and what `bind` sets."""
    if isinstance(field, serializers.BaseSerializer) or hasattr(field, "child"):
        return False
    if hasattr(field, "child_relation"):
        return False
    arguments = [*field._args, *(v for k, v in field._kwargs.items() if k not in _SHARED_ARGS)]
    return not any(isinstance(v, serializers.Field | dict | list | set) for v in arguments)


#: Arguments that copies may share: DRF never deep-copies validators and regexes, and a
#: ChoiceField reads its choices into mappings that validation only reads.
_SHARED_ARGS = frozenset({"validators", "regex", "choices"})


def _clone(prototype: serializers.Field) -> serializers.Field:
    field = object.__new__(type(prototype))
    field.__dict__.update(prototype.__dict__)
    return field


#: Per serializer class: its declared fields made once, never bound, and whether each is a leaf.
_PROTOTYPES: dict[type, list[tuple[str, serializers.Field, bool]]] = {}


class StrictSerializer(serializers.Serializer):
    """Unknown fields are a 400 that names them; server-owned fields are silently ignored."""

    #: fields the server owns: accepted in a body (e.g. a GET echoed back) and ignored.
    server_owned: frozenset[str] = frozenset()

    def get_fields(self) -> dict[str, serializers.Field]:
        # Every serializer gets field instances of its own, as with DRF's get_fields (deep
        # copies of the declared fields: each made again from its arguments). Making them
        # costs more than validating a request body, so a leaf field is a copy of a prototype
        # made once per class in that same way, taken before anything bound it; any other
        # field is deep-copied as DRF does.
        prototypes = _PROTOTYPES.get(type(self))
        if prototypes is None:
            made = copy.deepcopy(self._declared_fields)
            prototypes = [(name, field, _is_leaf(field)) for name, field in made.items()]
            _PROTOTYPES[type(self)] = prototypes
        return {
            name: _clone(field) if leaf else copy.deepcopy(field)
            for name, field, leaf in prototypes
        }

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object"]})
        unknown = sorted(set(data) - set(self.fields) - self.server_owned)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field"] for name in unknown})
        known = {k: v for k, v in data.items() if k not in self.server_owned or k in self.fields}
        return super().to_internal_value(known)
