"""Reads of the costs app, always scoped to a tenant."""

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from budgeting_site.platform.errors import ValidationFailed
from costs import budget_link
from costs.exceptions import CostRecordNotFound
from costs.fx import FxTable, exact_convert, to_storage
from costs.models import CostAllocation, CostAnomaly, CostRecord, UnitPrice
from costs.money import round_parts
from costs.pricing import PriceBook
from costs.reporting import (
    ROLLUP_DIMENSIONS,
    TIME_DIMENSIONS,
    CostQuery,
    aggregate,
    detailed_rows,
)
from costs.services import RECORD_COLUMNS, canonical_record

REPORT_TYPES: dict[str, list[str]] = {
    "summary": [],
    "detailed": [],
    "by_resource": ["resource_type"],
    "by_service": ["service_name"],
    "by_user": ["attributed_to_id"],
    "by_project": ["attributed_to_id"],
    "by_feature": ["attributed_to_id"],
    "by_region": ["region"],
    "by_tag": [],
    "by_time_period": ["day"],
}
#: by_user / by_project / by_feature report on records attributed to that level.
REPORT_ATTRIBUTION = {"by_user": "user", "by_project": "project", "by_feature": "feature"}
DETAILED_LIMIT = 10_000
SHARE_QUANTUM = Decimal("0.0001")
DEFAULT_REPORT_DAYS = 30


# --- FX and prices --------------------------------------------------------------------------


def convert(
    amount: Decimal,
    from_currency: str,
    to_currency: str,
    at: datetime,
    *,
    tenant_id: str | None = None,
) -> Decimal:
    """`amount` in `from_currency` expressed in `to_currency` at the FX rate in effect at `at`.

    Exact multiplication, then rounded half-even to the 10 decimal places money is stored
    with (not to the minor unit: callers that present money round it themselves). The same
    currency returns `amount` unchanged. Raises `costs.exceptions.FxRateMissing` (a 400
    VALIDATION_ERROR whose message and details name the pair) when no rate is in effect.
    `tenant_id`, when given, lets a tenant's own rates replace the operator's defaults.
    """
    if from_currency == to_currency:
        return amount
    rate = FxTable(tenant_id).rate(from_currency, to_currency, at)
    return to_storage(exact_convert(amount, rate))


def unit_price_at(
    tenant_id: str, resource_type: str, usage_unit: str, at: datetime
) -> tuple[Decimal, str] | None:
    """(unit price, currency) in effect at `at` for the tenant, or None."""
    return PriceBook(tenant_id).price_at(resource_type, usage_unit, at)


def unit_prices(tenant_id: str) -> QuerySet[UnitPrice]:
    return UnitPrice.objects.filter(Q(tenant_id=tenant_id) | Q(tenant_id=""))


# --- Records --------------------------------------------------------------------------------


def get_record(*, tenant_id: str, record_id: uuid.UUID) -> CostRecord:
    record = CostRecord.objects.filter(tenant_id=tenant_id, pk=record_id).first()
    if record is None:
        raise CostRecordNotFound()
    return record


def record_dict(record: CostRecord) -> dict[str, Any]:
    return canonical_record({c: getattr(record, c) for c in RECORD_COLUMNS})


@dataclass
class RecordFilters:
    start: datetime | None = None
    end: datetime | None = None
    equals: dict[str, str] = field(default_factory=dict)
    tags: list[tuple[str, str]] = field(default_factory=list)


def records_queryset(tenant_id: str, filters: RecordFilters) -> QuerySet[CostRecord]:
    """Every record of the tenant matching the filters (reversed and allocated ones too)."""
    qs = CostRecord.objects.filter(tenant_id=tenant_id)
    if filters.start is not None:
        qs = qs.filter(timestamp__gte=filters.start)
    if filters.end is not None:
        qs = qs.filter(timestamp__lt=filters.end)
    if filters.equals:
        qs = qs.filter(**filters.equals)
    for i, (key, value) in enumerate(filters.tags):
        alias = f"listtag{i}"
        qs = qs.annotate(**{alias: Cast(KeyTextTransform(key, "tags"), TextField())}).filter(
            **{alias: value}
        )
    return qs.order_by("-timestamp", "-record_id")


def encode_cursor(timestamp: datetime, record_id: uuid.UUID) -> str:
    raw = json.dumps([timestamp.astimezone(UTC).isoformat(), str(record_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, rid = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        at = datetime.fromisoformat(ts)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(rid)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not valid", details={"cursor": ["not valid"]}) from exc


def after_cursor(qs: QuerySet[CostRecord], cursor: str) -> QuerySet[CostRecord]:
    at, rid = decode_cursor(cursor)
    return qs.filter(Q(timestamp__lt=at) | Q(timestamp=at, record_id__lt=rid))


def default_currency(tenant_id: str) -> str:
    return budget_link.default_currency(tenant_id)


# --- Aggregates and reports -----------------------------------------------------------------


def rounded_breakdown(
    values: list[Decimal], total: Decimal, currency: str, converted: bool
) -> tuple[Decimal, list[Decimal]]:
    """Exact values as they are, or, when money was converted, rounded to the minor unit
    with largest remainder so the parts still add up to the rounded total exactly."""
    if not converted:
        return total, values
    return round_parts(values, currency)


def share_of(part: Decimal, total: Decimal) -> Decimal:
    if not total:
        return Decimal(0)
    return (part / total).quantize(SHARE_QUANTUM, rounding=ROUND_HALF_EVEN)


def aggregated(
    tenant_id: str, filters: RecordFilters, currency: str, group_by: list[str]
) -> dict[str, Any]:
    """`aggregated` (and `groups`) of the records list: every counted matching record."""
    query = CostQuery(
        tenant_id=tenant_id,
        currency=currency,
        start=filters.start,
        end=filters.end,
        filters=dict(filters.equals),
        tags=list(filters.tags),
        group_by=group_by,
    )
    agg = aggregate(query)
    keys = sorted(agg.groups, key=_sort_key)
    total, parts = rounded_breakdown(
        [agg.groups[k][0] for k in keys], agg.total_cost, currency, agg.converted
    )
    out: dict[str, Any] = {
        "aggregated": {
            "total_cost": total,
            "total_usage": agg.total_usage,
            "record_count": agg.record_count,
            "currency": currency,
        }
    }
    if group_by:
        out["groups"] = [
            {
                **dict(zip(group_by, key, strict=True)),
                "total_cost": part,
                "usage_quantity": agg.groups[key][1],
                "record_count": agg.groups[key][2],
                "share": share_of(part, total),
            }
            for key, part in zip(keys, parts, strict=True)
        ]
    return out


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else str(v)) for v in key)


@dataclass
class ReportRequest:
    tenant_id: str
    report_type: str
    currency: str
    start: datetime
    end: datetime
    group_by: list[str] | None = None
    tag_key: str | None = None
    equals: dict[str, str] = field(default_factory=dict)
    tags: list[tuple[str, str]] = field(default_factory=list)


def report_period(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """Defaults: the 30 UTC calendar days up to and including today, [today - 29, tomorrow);
    with one bound given, the 30 days from or up to it."""
    if start is None and end is None:
        tomorrow = now.astimezone(UTC).date() + timedelta(days=1)
        end = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
    if end is None:
        assert start is not None
        end = start + timedelta(days=DEFAULT_REPORT_DAYS)
    if start is None:
        start = end - timedelta(days=DEFAULT_REPORT_DAYS)
    return start, end


def dimensions_for(req: ReportRequest) -> list[str]:
    if req.group_by is not None:
        return list(req.group_by)
    if req.report_type == "by_tag":
        if not req.tag_key:
            raise ValidationFailed(
                "by_tag needs tag_key (or a group_by)", details={"tag_key": ["required"]}
            )
        return [f"tag:{req.tag_key}"]
    return list(REPORT_TYPES[req.report_type])


def build_report(req: ReportRequest, *, use_rollups: bool = True) -> dict[str, Any]:
    """The report of SPEC 4.2: breakdown rows whose total_cost adds up to total_cost."""
    equals = dict(req.equals)
    level = REPORT_ATTRIBUTION.get(req.report_type)
    if level is not None:
        if equals.get("attributed_to_type", level) != level:
            raise ValidationFailed(
                f"{req.report_type} reports on attributed_to_type={level}",
                details={"attributed_to_type": [f"must be {level} for {req.report_type}"]},
            )
        equals["attributed_to_type"] = level
    query = CostQuery(
        tenant_id=req.tenant_id,
        currency=req.currency,
        start=req.start,
        end=req.end,
        filters=equals,
        tags=list(req.tags),
    )
    period = {"start_time": req.start, "end_time": req.end}
    if req.report_type == "detailed" and req.group_by is None:
        return _detailed_report(req, query, period)
    dims = dimensions_for(req)
    query.group_by = dims
    agg = aggregate(query, use_rollups=use_rollups)
    keys = sorted(agg.groups, key=_sort_key)
    if not any(d in TIME_DIMENSIONS for d in dims):
        keys.sort(key=lambda k: agg.groups[k][0], reverse=True)
    total, parts = rounded_breakdown(
        [agg.groups[k][0] for k in keys], agg.total_cost, req.currency, agg.converted
    )
    breakdown = [
        {
            **dict(zip(dims, key, strict=True)),
            "total_cost": part,
            "usage_quantity": agg.groups[key][1],
            "record_count": agg.groups[key][2],
            "share": share_of(part, total),
        }
        for key, part in zip(keys, parts, strict=True)
    ]
    if not dims and not breakdown:
        breakdown = [
            {"total_cost": total, "usage_quantity": Decimal(0), "record_count": 0, "share": 0}
        ]
    return {
        "report_id": uuid.uuid4(),
        "report_type": req.report_type,
        "period": period,
        "group_by": dims,
        "total_cost": total,
        "total_usage": agg.total_usage,
        "record_count": agg.record_count,
        "currency": req.currency,
        "breakdown": breakdown,
    }


DETAILED_COLUMNS = (
    "record_id",
    "timestamp",
    "resource_type",
    "service_name",
    "region",
    "attributed_to_type",
    "attributed_to_id",
)


def _detailed_report(
    req: ReportRequest, query: CostQuery, period: dict[str, Any]
) -> dict[str, Any]:
    rows, truncated = detailed_rows(query, limit=DETAILED_LIMIT)
    if truncated:
        raise ValidationFailed(
            f"A detailed report holds at most {DETAILED_LIMIT} records; narrow the period or "
            "page through GET /cost-tracking/records",
            details={"report_type": [f"more than {DETAILED_LIMIT} records match"]},
        )
    converted = any(r["currency"] != req.currency for r in rows)
    exact_total = sum((r["_converted"] for r in rows), Decimal(0))
    total, parts = rounded_breakdown(
        [r["_converted"] for r in rows], exact_total, req.currency, converted
    )
    breakdown = [
        {
            **{c: r[c] for c in DETAILED_COLUMNS},
            "original_cost": r["cost_amount"],
            "original_currency": r["currency"],
            "total_cost": part,
            "usage_quantity": r["usage_quantity"] or Decimal(0),
            "record_count": 1,
            "share": share_of(part, total),
        }
        for r, part in zip(rows, parts, strict=True)
    ]
    return {
        "report_id": uuid.uuid4(),
        "report_type": req.report_type,
        "period": period,
        "group_by": list(DETAILED_COLUMNS),
        "total_cost": total,
        "total_usage": sum((r["usage_quantity"] or Decimal(0) for r in rows), Decimal(0)),
        "record_count": len(rows),
        "currency": req.currency,
        "breakdown": breakdown,
    }


VALID_FILTERS = ROLLUP_DIMENSIONS


# --- Allocations and anomalies --------------------------------------------------------------


def get_allocation(*, tenant_id: str, allocation_id: uuid.UUID) -> CostAllocation | None:
    return CostAllocation.objects.filter(tenant_id=tenant_id, pk=allocation_id).first()


def anomalies(tenant_id: str) -> QuerySet[CostAnomaly]:
    return CostAnomaly.objects.filter(tenant_id=tenant_id).order_by("-day", "-detected_at")


# --- Admin dashboard providers (docs/admin-dashboard.md) ----------------------------------


def _rollups_in(tenant_ids: list[str] | None, start: datetime, end: datetime) -> QuerySet[Any]:
    from costs.models import CostDailyRollup

    qs = CostDailyRollup.objects.filter(day__gte=start.date(), day__lt=end.date())
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    return qs


def _sum_by(qs: QuerySet[Any], fields: list[str]) -> list[tuple[Any, ...]]:
    """(*fields, Decimal sum of total_cost) - summed in Python so SQLite stays exact."""
    sums: dict[tuple[Any, ...], Decimal] = {}
    for row in qs.values_list(*fields, "total_cost").iterator(chunk_size=5000):
        key = tuple(row[:-1])
        sums[key] = sums.get(key, Decimal(0)) + row[-1]
    return [(*key, total) for key, total in sums.items()]


def dashboard_cost_per_day(
    *, tenant_ids: list[str] | None, start: datetime, end: datetime
) -> list[tuple[Any, str, Decimal]]:
    """(day, currency, amount): counted costs per UTC day, from the rollups."""
    return sorted(_sum_by(_rollups_in(tenant_ids, start, end), ["day", "currency"]))


def dashboard_top_spenders(
    *, tenant_ids: list[str] | None, start: datetime, end: datetime, limit: int
) -> list[tuple[str, str, str, Decimal]]:
    """(dimension, id, currency, amount), the largest `limit` per dimension."""
    rows: list[tuple[str, str, str, Decimal]] = []
    qs = _rollups_in(tenant_ids, start, end)
    tenants = _sum_by(qs, ["tenant_id", "currency"])
    rows += [("tenant", t, c, a) for t, c, a in sorted(tenants, key=lambda r: -r[2])[:limit]]
    for level in ("project", "feature"):
        found = _sum_by(qs.filter(attributed_to_type=level), ["attributed_to_id", "currency"])
        rows += [(level, i, c, a) for i, c, a in sorted(found, key=lambda r: -r[2])[:limit]]
    return rows
