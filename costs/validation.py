"""Validation of cost record input, by hand rather than with DRF serializers.

The batch path validates up to 1000 items per request and must stay lean (SPEC 4.1, issue 6:
≥ 20,000 records/s), so one small function checks an item and returns a plain value object;
the single-record endpoint uses the same function, so both paths accept exactly the same input.
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from budgeting_site.platform import params as platform_params
from budgeting_site.platform.errors import ValidationFailed

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_TAGS = 50
MAX_TAG_LENGTH = 256
MAX_ID = 128
MAX_IDEMPOTENCY_KEY = 255
MAX_CONTEXT_KEYS = 50
MAX_DIGITS = 28
MAX_PLACES = 10
#: One record holds less than 10^15 of its currency: sums of many still fit the stored
#: precision, and SQLite (REAL, 15 significant digits) can still read amounts back.
MAX_INTEGER_DIGITS = 15
ATTRIBUTION_TYPES = ("tenant", "project", "user", "feature")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
#: Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates).
UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
MAX_CONTEXT_DEPTH = 5
MAX_CONTEXT_CHARS = 8192

RECORD_FIELDS = frozenset(
    {
        "tenant_id",
        "resource_type",
        "cost_amount",
        "currency",
        "usage_quantity",
        "usage_unit",
        "resource_id",
        "service_name",
        "attributed_to_type",
        "attributed_to_id",
        "operation_context",
        "region",
        "tags",
        "timestamp",
        "reservation_id",
        "idempotency_key",
    }
)


class ItemInvalid(ValidationFailed):
    """One record's input is not valid; `details` maps each bad field to its messages."""


@dataclass(slots=True)
class RecordInput:
    resource_type: str
    attributed_to_type: str
    attributed_to_id: str
    currency: str | None
    cost_amount: Decimal | None
    usage_quantity: Decimal | None
    usage_unit: str = ""
    resource_id: str = ""
    service_name: str = ""
    region: str = ""
    operation_context: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None
    reservation_id: uuid.UUID | None = None
    idempotency_key: str | None = None


def parse_money(value: Any, name: str, errors: dict[str, list[str]]) -> Decimal | None:
    """A JSON number or numeric string, finite, ≥ 0, at most 28 digits and 10 places."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str | float):
        errors[name] = ["must be a number or a numeric string"]
        return None
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[name] = ["must be a number or a numeric string"]
        return None
    if not amount.is_finite():
        errors[name] = ["must be a finite number"]
        return None
    if amount < 0:
        errors[name] = ["must be at least 0"]
        return None
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > MAX_PLACES:
        errors[name] = [f"at most {MAX_PLACES} decimal places"]
        return None
    if amount >= Decimal(10) ** MAX_INTEGER_DIGITS:
        errors[name] = [f"at most {MAX_INTEGER_DIGITS} digits before the decimal point"]
        return None
    return amount + 0  # normalises -0 to 0


def parse_instant(value: Any, name: str, errors: dict[str, list[str]]) -> datetime | None:
    """The platform's instant (RFC 3339 with an offset, stored in UTC, or a bare date meaning
    00:00Z), its error collected into `errors` so that an item reports every bad field. Costs
    also refuse what is not a non-empty string of at most 64 characters (a body's JSON value
    may be anything)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        errors[name] = ["must be an RFC 3339 instant"]
        return None
    try:
        return platform_params.parse_instant(value, name)
    except ValidationFailed as exc:
        errors[name] = list(exc.details[name])
        return None


def _text(
    data: dict[str, Any], name: str, errors: dict[str, list[str]], max_length: int = MAX_ID
) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[name] = ["must be a string"]
        return ""
    if len(value) > max_length:
        errors[name] = [f"at most {max_length} characters"]
        return ""
    if UNSTORABLE_RE.search(value):
        errors[name] = ["must not contain NUL or unpaired surrogate characters"]
        return ""
    return value


def _tags(value: Any, errors: dict[str, list[str]]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["tags"] = ["must be an object of strings"]
        return {}
    if len(value) > MAX_TAGS:
        errors["tags"] = [f"at most {MAX_TAGS} keys"]
        return {}
    for key, tag in value.items():
        if not isinstance(tag, str):
            errors["tags"] = [f"tag {key!r} must be a string"]
            return {}
        if (
            not key
            or len(key) > MAX_ID
            or len(tag) > MAX_TAG_LENGTH
            or UNSTORABLE_RE.search(key + tag)
        ):
            errors["tags"] = [
                f"tag keys are 1..{MAX_ID} and values at most {MAX_TAG_LENGTH} characters"
            ]
            return {}
    return value


def _context(value: Any, errors: dict[str, list[str]]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["operation_context"] = ["must be an object"]
        return {}
    if len(value) > MAX_CONTEXT_KEYS:
        errors["operation_context"] = [f"at most {MAX_CONTEXT_KEYS} keys"]
        return {}
    for key in ("project_id", "user_id", "feature_id"):
        item = value.get(key)
        if item is not None and (not isinstance(item, str) or len(item) > MAX_ID):
            errors["operation_context"] = [f"{key} must be a string of at most {MAX_ID}"]
            return {}
    budget = [MAX_CONTEXT_CHARS]
    if not _storable(value, MAX_CONTEXT_DEPTH, budget):
        errors["operation_context"] = [
            f"at most {MAX_CONTEXT_DEPTH} levels and {MAX_CONTEXT_CHARS} characters of text, "
            "without NUL or unpaired surrogate characters"
        ]
        return {}
    return value


def _storable(value: Any, depth: int, budget: list[int]) -> bool:
    """A JSON value PostgreSQL's jsonb can store, within a depth and a text budget."""
    if isinstance(value, str):
        budget[0] -= len(value)
        return budget[0] >= 0 and not UNSTORABLE_RE.search(value)
    if isinstance(value, dict):
        if depth == 0:
            return False
        return all(
            _storable(k, depth, budget) and _storable(v, depth - 1, budget)
            for k, v in value.items()
        )
    if isinstance(value, list):
        if depth == 0:
            return False
        return all(_storable(v, depth - 1, budget) for v in value)
    if isinstance(value, Decimal):
        return value.is_finite() and abs(value.adjusted()) < 1000
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 10**1000
    return value is None or isinstance(value, bool)


def parse_record(
    data: Any, *, tenant_id: str, now: datetime, require_key: bool = False
) -> RecordInput:
    """Check one record's input; raise ItemInvalid naming every bad field."""
    if not isinstance(data, dict):
        raise ItemInvalid("A record must be a JSON object", details={"record": ["not an object"]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - RECORD_FIELDS)
    for name in unknown:
        errors[name] = ["Unknown field"]
    given_tenant = data.get("tenant_id")
    if given_tenant not in (None, "") and given_tenant != tenant_id:
        errors["tenant_id"] = ["is not your tenant"]

    resource_type = _text(data, "resource_type", errors)
    if not resource_type and "resource_type" not in errors:
        errors["resource_type"] = ["This field is required"]

    cost_amount = parse_money(data.get("cost_amount"), "cost_amount", errors)
    usage_quantity = parse_money(data.get("usage_quantity"), "usage_quantity", errors)
    if (
        data.get("cost_amount") is None
        and data.get("usage_quantity") is None
        and "cost_amount" not in errors
    ):
        errors["cost_amount"] = ["cost_amount or usage_quantity is required"]

    currency = data.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not CURRENCY_RE.match(currency.upper()):
            errors["currency"] = ["must be an ISO 4217 code"]
            currency = None
        else:
            currency = currency.upper()

    attributed_to_type = data.get("attributed_to_type") or "tenant"
    if attributed_to_type not in ATTRIBUTION_TYPES:
        errors["attributed_to_type"] = [f"must be one of {', '.join(ATTRIBUTION_TYPES)}"]
    attributed_to_id = _text(data, "attributed_to_id", errors)
    if attributed_to_type == "tenant":
        if attributed_to_id and attributed_to_id != tenant_id:
            errors["attributed_to_id"] = ["a tenant attribution names the tenant itself"]
        attributed_to_id = tenant_id
    elif not attributed_to_id and "attributed_to_id" not in errors:
        errors["attributed_to_id"] = [f"required when attributed_to_type is {attributed_to_type}"]

    timestamp = parse_instant(data.get("timestamp"), "timestamp", errors)
    if timestamp is not None and timestamp > now + FUTURE_TOLERANCE:
        errors["timestamp"] = ["must not be more than 5 minutes in the future"]

    reservation_id = None
    raw_reservation = data.get("reservation_id")
    if raw_reservation is not None:
        try:
            reservation_id = uuid.UUID(str(raw_reservation))
        except (ValueError, TypeError, AttributeError):
            errors["reservation_id"] = ["not a valid UUID"]

    key = data.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY
    ):
        errors["idempotency_key"] = [f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"]
        key = None
    elif key is None and require_key:
        errors["idempotency_key"] = ["This field is required"]

    record = RecordInput(
        resource_type=resource_type,
        attributed_to_type=attributed_to_type,
        attributed_to_id=attributed_to_id,
        currency=currency,
        cost_amount=cost_amount,
        usage_quantity=usage_quantity,
        usage_unit=_text(data, "usage_unit", errors, 64),
        resource_id=_text(data, "resource_id", errors),
        service_name=_text(data, "service_name", errors),
        region=_text(data, "region", errors),
        operation_context=_context(data.get("operation_context"), errors),
        tags=_tags(data.get("tags"), errors),
        timestamp=timestamp,
        reservation_id=reservation_id,
        idempotency_key=key,
    )
    if errors:
        first = next(iter(errors))
        raise ItemInvalid(f"{first}: {errors[first][0]}", details=errors)
    return record
