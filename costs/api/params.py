"""Query-string and report-body parsing for the costs endpoints (400s name the parameter)."""

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from budgeting_site.platform.errors import ValidationFailed
from costs.reporting import ROLLUP_DIMENSIONS, is_valid_dimension
from costs.selectors import REPORT_TYPES, RecordFilters, ReportRequest, report_period
from costs.validation import ATTRIBUTION_TYPES, CURRENCY_RE, parse_instant

REPORT_FIELDS = frozenset(
    {
        "tenant_id",
        "report_type",
        "start_time",
        "end_time",
        "group_by",
        "currency",
        "format",
        "tag_key",
        "tag",
        *ROLLUP_DIMENSIONS,
    }
)


def _bad(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {message}", details={name: [message]})


def instant(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    errors: dict[str, list[str]] = {}
    parsed = parse_instant(value, name, errors)
    if errors:
        raise _bad(name, errors[name][0])
    return parsed


def currency(value: Any, default: str) -> str:
    if value in (None, ""):
        return default
    if not isinstance(value, str) or not CURRENCY_RE.match(value.upper()):
        raise _bad("currency", "must be an ISO 4217 code")
    return value.upper()


def group_by(value: Any) -> list[str] | None:
    """A JSON list, or a comma-separated string; None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise _bad("group_by", "must be a list of dimension names or a comma-separated string")
    if len(items) > 8:
        raise _bad("group_by", "at most 8 dimensions")
    for item in items:
        if not is_valid_dimension(item):
            raise _bad(
                "group_by",
                f"unknown dimension {item!r}; use resource_type, service_name, region, "
                "attributed_to_type, attributed_to_id, tag:<key>, day, week or month",
            )
    if len(set(items)) != len(items):
        raise _bad("group_by", "a dimension is repeated")
    return items


def tags(values: list[Any]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        if not isinstance(value, str) or ":" not in value:
            raise _bad("tag", "must be key:value")
        key, _, tag_value = value.partition(":")
        if not key or len(key) > 128 or len(tag_value) > 256:
            raise _bad("tag", "must be key:value with a key of 1..128 characters")
        out.append((key, tag_value))
    return out


def equals(source: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ROLLUP_DIMENSIONS:
        value = source.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or len(value) > 128:
            raise _bad(name, "must be a string of at most 128 characters")
        out[name] = value
    kind = out.get("attributed_to_type")
    if kind is not None and kind not in ATTRIBUTION_TYPES:
        raise _bad("attributed_to_type", f"must be one of {', '.join(ATTRIBUTION_TYPES)}")
    return out


def _range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise _bad("end_time", "must be after start_time")


def record_filters(query: Any) -> RecordFilters:
    start = instant(query.get("start_time"), "start_time")
    end = instant(query.get("end_time"), "end_time")
    _range(start, end)
    return RecordFilters(
        start=start, end=end, equals=equals(query), tags=tags(query.getlist("tag"))
    )


_SAFE_FORMAT = re.compile(r"^(json|csv)$")


def output_format(value: Any, accept: str) -> str:
    if value in (None, ""):
        return "csv" if "text/csv" in (accept or "") else "json"
    if not isinstance(value, str) or not _SAFE_FORMAT.match(value):
        raise _bad("format", "must be json or csv")
    return value


def report_request(
    source: Mapping[str, Any],
    *,
    tenant_id: str,
    default_currency: str,
    now: datetime,
    tag_values: list[Any],
    strict: bool,
) -> ReportRequest:
    if strict:
        unknown = sorted(set(source) - REPORT_FIELDS)
        if unknown:
            raise ValidationFailed(
                f"{unknown[0]}: Unknown field", details={n: ["Unknown field"] for n in unknown}
            )
    report_type = source.get("report_type") or "summary"
    if report_type not in REPORT_TYPES:
        raise _bad("report_type", f"must be one of {', '.join(REPORT_TYPES)}")
    start = instant(source.get("start_time"), "start_time")
    end = instant(source.get("end_time"), "end_time")
    _range(start, end)
    start, end = report_period(start, end, now)
    tag_key = source.get("tag_key")
    if tag_key is not None and (not isinstance(tag_key, str) or not 0 < len(tag_key) <= 128):
        raise _bad("tag_key", "must be a string of 1..128 characters")
    return ReportRequest(
        tenant_id=tenant_id,
        report_type=report_type,
        currency=currency(source.get("currency"), default_currency),
        start=start,
        end=end,
        group_by=group_by(source.get("group_by")),
        tag_key=tag_key or None,
        equals=equals(source),
        tags=tags(tag_values),
    )
