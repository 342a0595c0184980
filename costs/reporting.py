"""Exact cost aggregation for reports, record lists and anomaly detection.

Sums are exact: every amount is converted at the FX rate in effect at its record's timestamp
with wide-precision multiplication (no rounding), then summed. To read few rows:

- The requested range is cut into segments at every instant an FX rate that matters takes
  effect, so inside a segment each currency has one rate and a group's sum can be converted
  once (Σ amount x r = r x Σ amount, exactly).
- Inside a segment, whole UTC days come from the daily rollups when the grouping and filters
  are rollup dimensions; the partial days at the edges (and tag groupings or filters) come
  from the raw table.

So a rollup-based answer and a raw-table answer are the same numbers, not just close ones.
On PostgreSQL the database sums (NUMERIC is exact); on SQLite, which stores decimals as REAL,
rows are summed in Python.
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Any

from django.db import connection
from django.db.models import Count, F, QuerySet, Sum, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate

from budgeting_site.platform.money import WIDE_PRECISION
from costs.fx import FxTable
from costs.models import CostDailyRollup, CostRecord

ROLLUP_DIMENSIONS = (
    "resource_type",
    "service_name",
    "region",
    "attributed_to_type",
    "attributed_to_id",
)
TIME_DIMENSIONS = ("day", "week", "month")
FILTER_FIELDS = ROLLUP_DIMENSIONS
DT_MIN = datetime(1, 1, 2, tzinfo=UTC)
ZERO = Decimal(0)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _ceil_day(at: datetime) -> date:
    at = at.astimezone(UTC)
    d = at.date()
    return d if at == datetime.combine(d, time.min, tzinfo=UTC) else d + timedelta(days=1)


def _floor_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def is_valid_dimension(name: str) -> bool:
    if name in ROLLUP_DIMENSIONS or name in TIME_DIMENSIONS:
        return True
    return name.startswith("tag:") and 0 < len(name) - 4 <= 128


def time_key(day: date, dim: str) -> str:
    if dim == "day":
        return day.isoformat()
    if dim == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return f"{day.year:04d}-{day.month:02d}"


@dataclass
class CostQuery:
    tenant_id: str
    currency: str
    start: datetime | None = None
    end: datetime | None = None
    #: equality filters on rollup dimensions
    filters: dict[str, str] = field(default_factory=dict)
    #: (key, value) tag filters, all must match
    tags: list[tuple[str, str]] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)

    @property
    def needs_raw(self) -> bool:
        return bool(self.tags) or any(d.startswith("tag:") for d in self.group_by)


@dataclass
class Aggregate:
    """Exact sums per group key (a tuple in `group_by` order)."""

    currency: str
    group_by: list[str]
    groups: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    converted: bool = False
    rollup_days: int = 0
    raw_ranges: int = 0

    def add(self, key: tuple[Any, ...], cost: Decimal, usage: Decimal, count: int) -> None:
        entry = self.groups.get(key)
        if entry is None:
            self.groups[key] = [cost, usage, count]
        else:
            entry[0] += cost
            entry[1] += usage
            entry[2] += count

    @property
    def total_cost(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = WIDE_PRECISION
            return sum((g[0] for g in self.groups.values()), ZERO)

    @property
    def total_usage(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = WIDE_PRECISION
            return sum((g[1] for g in self.groups.values()), ZERO)

    @property
    def record_count(self) -> int:
        return sum(g[2] for g in self.groups.values())


def raw_queryset(query: CostQuery) -> QuerySet[CostRecord]:
    """Counted records of the tenant matching the query's filters (any time)."""
    qs = CostRecord.objects.filter(tenant_id=query.tenant_id, counted=True)
    if query.filters:
        qs = qs.filter(**query.filters)
    for i, (key, value) in enumerate(query.tags):
        # ->> on PostgreSQL, json_extract on SQLite; the key is passed safely either way.
        alias = f"tagfilter{i}"
        qs = qs.annotate(**{alias: Cast(KeyTextTransform(key, "tags"), TextField())}).filter(
            **{alias: value}
        )
    return qs


def _currencies(query: CostQuery, use_rollups: bool) -> set[str]:
    if use_rollups and not query.needs_raw:
        qs: QuerySet[Any] = CostDailyRollup.objects.filter(tenant_id=query.tenant_id)
        if query.start is not None:
            qs = qs.filter(day__gte=_floor_day(query.start))
        if query.end is not None:
            qs = qs.filter(day__lte=_floor_day(query.end))
    else:
        qs = raw_queryset(query)
        if query.start is not None:
            qs = qs.filter(timestamp__gte=query.start)
        if query.end is not None:
            qs = qs.filter(timestamp__lt=query.end)
    return set(qs.order_by().values_list("currency", flat=True).distinct())


def _segments(
    query: CostQuery, fx: FxTable, currencies: Iterable[str]
) -> list[tuple[datetime | None, datetime | None]]:
    cuts: set[datetime] = set()
    for currency in currencies:
        if currency == query.currency:
            continue
        times, _ = fx._load(currency, query.currency)
        for t in times:
            if (query.start is None or t > query.start) and (query.end is None or t < query.end):
                cuts.add(t)
    points: list[datetime | None] = [query.start, *sorted(cuts), query.end]
    return list(pairwise(points))


def aggregate(
    query: CostQuery, *, fx: FxTable | None = None, use_rollups: bool = True
) -> Aggregate:
    """Exact totals per group of `query.group_by` over [start, end), in `query.currency`."""
    fx = fx or FxTable(query.tenant_id)
    result = Aggregate(currency=query.currency, group_by=list(query.group_by))
    currencies = _currencies(query, use_rollups)
    if not currencies:
        return result
    rollup_ok = use_rollups and not query.needs_raw
    for seg_start, seg_end in _segments(query, fx, currencies):
        probe = seg_start or DT_MIN
        rates: dict[str, Decimal] = {}

        def rate_for(
            currency: str, _rates: dict[str, Decimal] = rates, _probe: datetime = probe
        ) -> Decimal:
            found = _rates.get(currency)
            if found is None:
                found = _rates[currency] = fx.rate(currency, query.currency, _probe)
            return found

        if rollup_ok:
            first_day = _ceil_day(seg_start) if seg_start is not None else None
            last_day = _floor_day(seg_end) if seg_end is not None else None  # exclusive
            if first_day is not None and last_day is not None and first_day >= last_day:
                _from_raw(query, seg_start, seg_end, rate_for, result)
                continue
            if seg_start is not None and first_day is not None:
                head_end = datetime.combine(first_day, time.min, tzinfo=UTC)
                if seg_start < head_end:
                    _from_raw(query, seg_start, head_end, rate_for, result)
            _from_rollups(query, first_day, last_day, rate_for, result)
            if seg_end is not None and last_day is not None:
                tail_start = datetime.combine(last_day, time.min, tzinfo=UTC)
                if tail_start < seg_end:
                    _from_raw(query, tail_start, seg_end, rate_for, result)
        else:
            _from_raw(query, seg_start, seg_end, rate_for, result)
    return result


def _convert(amount: Decimal, rate: Decimal) -> Decimal:
    if rate == 1:
        return amount
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return amount * rate


def _key_builder(group_by: Sequence[str]) -> Any:
    def build(row: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for dim in group_by:
            if dim in TIME_DIMENSIONS:
                out.append(time_key(row["_day"], dim))
            elif dim.startswith("tag:"):
                out.append(row.get(_tag_alias(dim)))
            else:
                out.append(row[dim])
        return tuple(out)

    return build


def _tag_alias(dim: str) -> str:
    return "tagdim_" + hashlib.sha1(dim.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


def _group_fields(group_by: Sequence[str], *, rollup: bool) -> tuple[dict[str, Any], list[str]]:
    """Annotations and value names to group by (always with currency)."""
    annotations: dict[str, Any] = {}
    names = ["currency"]
    needs_day = any(d in TIME_DIMENSIONS for d in group_by)
    if needs_day:
        annotations["_day"] = F("day") if rollup else TruncDate("timestamp", tzinfo=UTC)
        names.append("_day")
    for dim in group_by:
        if dim in ROLLUP_DIMENSIONS and dim not in names:
            names.append(dim)
        elif dim.startswith("tag:"):
            alias = _tag_alias(dim)
            if alias not in annotations:
                annotations[alias] = KeyTextTransform(dim[4:], "tags")
                names.append(alias)
    return annotations, names


def _accumulate(
    qs: QuerySet[Any],
    query: CostQuery,
    rate_for: Any,
    result: Aggregate,
    *,
    rollup: bool,
) -> None:
    annotations, names = _group_fields(query.group_by, rollup=rollup)
    cost_f, usage_f = ("total_cost", "total_usage") if rollup else ("cost_amount", "usage_quantity")
    build = _key_builder(query.group_by)
    if annotations:
        qs = qs.annotate(**annotations)
    rows: Iterable[dict[str, Any]]
    if connection.vendor == "postgresql":
        count = Sum("record_count") if rollup else Count("pk")
        rows = (
            qs.order_by()
            .values(*names)
            .annotate(_cost=Sum(cost_f), _usage=Sum(usage_f), _count=count)
        )
    else:
        sums: dict[tuple[Any, ...], list[Any]] = {}
        for values in qs.order_by().values(
            *names, cost_f, usage_f, *(["record_count"] if rollup else [])
        ):
            group = tuple(values[n] for n in names)
            entry = sums.get(group)
            if entry is None:
                entry = sums[group] = [ZERO, ZERO, 0]
            entry[0] += values[cost_f]
            entry[1] += values[usage_f] or ZERO
            entry[2] += values["record_count"] if rollup else 1
        rows = [
            {**dict(zip(names, group, strict=True)), "_cost": v[0], "_usage": v[1], "_count": v[2]}
            for group, v in sums.items()
        ]
    for row in rows:
        if not row["_count"]:
            continue
        rate = rate_for(row["currency"])
        if row["currency"] != query.currency:
            result.converted = True
        result.add(
            build(row),
            _convert(row["_cost"] or ZERO, rate),
            row["_usage"] or ZERO,
            int(row["_count"]),
        )


def _from_raw(
    query: CostQuery,
    start: datetime | None,
    end: datetime | None,
    rate_for: Any,
    result: Aggregate,
) -> None:
    qs = raw_queryset(query)
    if start is not None:
        qs = qs.filter(timestamp__gte=start)
    if end is not None:
        qs = qs.filter(timestamp__lt=end)
    result.raw_ranges += 1
    _accumulate(qs, query, rate_for, result, rollup=False)


def _from_rollups(
    query: CostQuery,
    first_day: date | None,
    last_day: date | None,
    rate_for: Any,
    result: Aggregate,
) -> None:
    qs: QuerySet[Any] = CostDailyRollup.objects.filter(tenant_id=query.tenant_id)
    if first_day is not None:
        qs = qs.filter(day__gte=first_day)
    if last_day is not None:
        qs = qs.filter(day__lt=last_day)
    if query.filters:
        qs = qs.filter(**query.filters)
    result.rollup_days += 1
    _accumulate(qs, query, rate_for, result, rollup=True)


def detailed_rows(
    query: CostQuery, *, fx: FxTable | None = None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """One row per counted record (oldest first), converted exactly; (rows, truncated)."""
    fx = fx or FxTable(query.tenant_id)
    qs = raw_queryset(query)
    if query.start is not None:
        qs = qs.filter(timestamp__gte=query.start)
    if query.end is not None:
        qs = qs.filter(timestamp__lt=query.end)
    fetched = list(
        qs.order_by("timestamp", "record_id").values(
            "record_id",
            "timestamp",
            "resource_type",
            "service_name",
            "region",
            "attributed_to_type",
            "attributed_to_id",
            "cost_amount",
            "currency",
            "usage_quantity",
        )[: limit + 1]
    )
    truncated = len(fetched) > limit
    rows = []
    for r in fetched[:limit]:
        rate = fx.rate(r["currency"], query.currency, r["timestamp"])
        rows.append({**r, "_converted": _convert(r["cost_amount"], rate)})
    return rows, truncated
