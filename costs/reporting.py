"""Exact cost aggregation for reports, record lists and anomaly detection.

Sums are exact: every amount is converted at the FX rate in effect at its record's timestamp
with wide-precision multiplication (no rounding), then summed. To read few rows:

- The requested range is cut into segments at every instant an FX rate that matters takes
  effect, so inside a segment each currency has one rate and a group's sum can be converted
  once (Σ amount x r = r x Σ amount, exactly).
- Inside a segment, whole UTC days come from the daily rollups, the whole hours of a partial
  day (a window or a segment that does not start or end at midnight) from the hourly
  rollups, and only the sub-hour edges from the raw table.
- A query on tags and no other dimension (grouped by or filtered on any number of tag keys,
  and time) reads the tag-set rollups: daily for whole days, hourly for the whole hours of
  partial days, the raw table for sub-hour edges.
- A query on one tag key and other dimensions reads the tag rollups for whole days (records
  without the key: the daily rollup minus the tag rollup) and the raw table for partial days.
  More than one tag key together with other dimensions reads the raw table.

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
from costs.models import (
    CostDailyRollup,
    CostHourlyRollup,
    CostRecord,
    CostTagRollup,
    CostTagSetDailyRollup,
    CostTagSetHourlyRollup,
)
from costs.rollups import DIMENSIONS as ROLLUP_DIMENSIONS
from costs.rollups import WIDE

TIME_DIMENSIONS = ("day", "week", "month")
FILTER_FIELDS = ROLLUP_DIMENSIONS
DT_MIN = datetime(1, 1, 2, tzinfo=UTC)
ZERO = Decimal(0)


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


@dataclass(frozen=True)
class RollupPlan:
    """Which rollups can answer a query: plain (no tag involved), tag sets (tags and no other
    dimension), or one tag key (with other dimensions)."""

    tag_key: str | None = None
    #: the one tag filter's value, when the query filters on the tag
    tag_value: str | None = None
    tag_sets: bool = False

    @property
    def absent_group(self) -> bool:
        """Grouped by the tag without filtering on it: records without the key are a group."""
        return self.tag_key is not None and self.tag_value is None


def rollup_plan(query: CostQuery) -> RollupPlan | None:
    """None when only the raw table can answer (other dimensions together with tags of more
    than one key or two tag filters)."""
    keys = {d[4:] for d in query.group_by if d.startswith("tag:")} | {k for k, _ in query.tags}
    if not keys:
        return RollupPlan()
    if not query.filters and not any(d in ROLLUP_DIMENSIONS for d in query.group_by):
        return RollupPlan(tag_sets=True)
    if len(keys) > 1 or len(query.tags) > 1:
        return None
    return RollupPlan(keys.pop(), query.tags[0][1] if query.tags else None)


@dataclass
class Aggregate:
    """Exact sums per group key (a tuple in `group_by` order)."""

    currency: str
    group_by: list[str]
    groups: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    converted: bool = False
    #: how many ranges were read from rollups and from the raw table
    rollup_ranges: int = 0
    raw_ranges: int = 0

    def add(self, key: tuple[Any, ...], cost: Decimal, usage: Decimal, count: int) -> None:
        entry = self.groups.get(key)
        if entry is None:
            self.groups[key] = [cost, usage, count]
        else:
            entry[0] = WIDE.add(entry[0], cost)
            entry[1] = WIDE.add(entry[1], usage)
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
    return _tag_filtered(qs, query.tags)


def _tag_filtered(qs: QuerySet[Any], tags: Sequence[tuple[str, str]]) -> QuerySet[Any]:
    """The rows of `qs` whose `tags` hold every (key, value) of `tags`."""
    for i, (key, value) in enumerate(tags):
        # ->> on PostgreSQL, json_extract on SQLite; the key is passed safely either way.
        alias = f"tagfilter{i}"
        qs = qs.annotate(**{alias: Cast(KeyTextTransform(key, "tags"), TextField())}).filter(
            **{alias: value}
        )
    return qs


def _currencies(query: CostQuery, use_rollups: bool) -> set[str]:
    """The currencies the query may meet (a superset is fine: it only adds FX cuts)."""
    if use_rollups:
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
    plan = rollup_plan(query) if use_rollups else None
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

        reader = _Reader(query, plan, rate_for, result)
        if plan is None:
            reader.raw(seg_start, seg_end)
            continue
        first_day = _ceil_day(seg_start) if seg_start is not None else None
        last_day = _floor_day(seg_end) if seg_end is not None else None  # exclusive
        if first_day is not None and last_day is not None and first_day >= last_day:
            assert seg_start is not None and seg_end is not None
            reader.partial(seg_start, seg_end)
            continue
        if seg_start is not None and first_day is not None:
            reader.partial(seg_start, _midnight(first_day))
        reader.days(first_day, last_day)
        if seg_end is not None and last_day is not None:
            reader.partial(_midnight(last_day), seg_end)
    # Records without a tag key are the daily rollup minus the tag rollup: a group that
    # nets out to no record is no group.
    result.groups = {k: v for k, v in result.groups.items() if v[2]}
    return result


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _ceil_hour(at: datetime) -> datetime:
    floor = _floor_hour(at)
    return floor if floor == at else floor + timedelta(hours=1)


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _convert(amount: Decimal, rate: Decimal) -> Decimal:
    if rate == 1:
        return amount
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return amount * rate


def _key_builder(group_by: Sequence[str]) -> Any:
    def build(row: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
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


#: What each source calls its sums, and its UTC day.
RAW, DAILY, HOURLY, TAGGED = "raw", "daily", "hourly", "tagged"
TAG_SETS, TAG_SETS_HOURLY = "tag_sets", "tag_sets_hourly"
_SUMS = {
    RAW: ("cost_amount", "usage_quantity"),
    DAILY: ("total_cost", "total_usage"),
    HOURLY: ("total_cost", "total_usage"),
    TAGGED: ("total_cost", "total_usage"),
    TAG_SETS: ("total_cost", "total_usage"),
    TAG_SETS_HOURLY: ("total_cost", "total_usage"),
}
#: The sources that keep a record's whole `tags` object.
_WITH_TAGS = (RAW, TAG_SETS, TAG_SETS_HOURLY)


def _day_of(source: str) -> Any:
    if source == RAW:
        return TruncDate("timestamp", tzinfo=UTC)
    if source in (HOURLY, TAG_SETS_HOURLY):
        return TruncDate("hour", tzinfo=UTC)
    return F("day")


def _group_fields(group_by: Sequence[str], source: str) -> tuple[dict[str, Any], list[str]]:
    """Annotations and value names to group by (always with currency). A tag dimension is
    the tag's value in the raw table and the tag sets, `tag_value` in the tag rollup, and left
    out (None: no such tag) in the other rollups."""
    annotations: dict[str, Any] = {}
    names = ["currency"]
    if any(d in TIME_DIMENSIONS for d in group_by):
        annotations["_day"] = _day_of(source)
        names.append("_day")
    for dim in group_by:
        if dim in ROLLUP_DIMENSIONS and dim not in names:
            names.append(dim)
        elif dim.startswith("tag:") and source in (*_WITH_TAGS, TAGGED):
            alias = _tag_alias(dim)
            if alias not in annotations:
                annotations[alias] = (
                    KeyTextTransform(dim[4:], "tags") if source in _WITH_TAGS else F("tag_value")
                )
                names.append(alias)
    return annotations, names


def _grouped_sums(qs: QuerySet[Any], names: list[str], source: str) -> Iterable[dict[str, Any]]:
    """One row per group of `names` with `_cost`, `_usage` and `_count`."""
    cost_f, usage_f = _SUMS[source]
    rollup = source != RAW
    if connection.vendor == "postgresql":
        count = Sum("record_count") if rollup else Count("pk")
        return (
            qs.order_by()
            .values(*names)
            .annotate(_cost=Sum(cost_f), _usage=Sum(usage_f), _count=count)
        )
    # SQLite stores decimals as REAL: sum in Python so the sums stay exact.
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for values in qs.order_by().values(
        *names, cost_f, usage_f, *(["record_count"] if rollup else [])
    ):
        group = tuple(values[n] for n in names)
        entry = sums.get(group)
        if entry is None:
            entry = sums[group] = [ZERO, ZERO, 0]
        entry[0] = WIDE.add(entry[0], values[cost_f])
        entry[1] = WIDE.add(entry[1], values[usage_f] or ZERO)
        entry[2] += values["record_count"] if rollup else 1
    return [
        {**dict(zip(names, group, strict=True)), "_cost": v[0], "_usage": v[1], "_count": v[2]}
        for group, v in sums.items()
    ]


@dataclass
class _Reader:
    """Adds one segment's ranges to `result` from the table that can answer each."""

    query: CostQuery
    plan: RollupPlan | None
    rate_for: Any
    result: Aggregate

    def _add(self, qs: QuerySet[Any], source: str, *, net_out: bool = False) -> None:
        """Add the groups of `qs`; `net_out`: also take each away from the group without
        the tag (the tag rollup's rows against the daily rollup's)."""
        query, result = self.query, self.result
        annotations, names = _group_fields(query.group_by, source)
        if annotations:
            qs = qs.annotate(**annotations)
        build = _key_builder(query.group_by)
        tag_at = [i for i, d in enumerate(query.group_by) if d.startswith("tag:")]
        for row in _grouped_sums(qs, names, source):
            if not row["_count"]:
                continue
            rate = self.rate_for(row["currency"])
            if row["currency"] != query.currency:
                result.converted = True
            key = build(row)
            cost = _convert(row["_cost"] or ZERO, rate)
            usage = row["_usage"] or ZERO
            count = int(row["_count"])
            result.add(key, cost, usage, count)
            if net_out:
                untagged = tuple(None if i in tag_at else v for i, v in enumerate(key))
                result.add(untagged, -cost, -usage, -count)

    def _rollup(self, model: type[Any], **lookups: Any) -> QuerySet[Any]:
        qs: QuerySet[Any] = model.objects.filter(tenant_id=self.query.tenant_id, **lookups)
        return qs.filter(**self.query.filters) if self.query.filters else qs

    def _tag_sets(self, model: type[Any], **lookups: Any) -> QuerySet[Any]:
        qs = model.objects.filter(tenant_id=self.query.tenant_id, **lookups)
        return _tag_filtered(qs, self.query.tags)

    def raw(self, start: datetime | None, end: datetime | None) -> None:
        qs = raw_queryset(self.query)
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lt=end)
        self.result.raw_ranges += 1
        self._add(qs, RAW)

    def partial(self, start: datetime, end: datetime) -> None:
        """A range of less than whole days: whole hours from the hourly rollups (plain or tag
        sets) unless one tag key goes with other dimensions, the rest from the raw table."""
        if start >= end:
            return
        first, last = _ceil_hour(start), _floor_hour(end)
        if self.plan is None or self.plan.tag_key is not None or first >= last:
            self.raw(start, end)
            return
        if start < first:
            self.raw(start, first)
        self.result.rollup_ranges += 1
        hours = {"hour__gte": first, "hour__lt": last}
        if self.plan.tag_sets:
            self._add(self._tag_sets(CostTagSetHourlyRollup, **hours), TAG_SETS_HOURLY)
        else:
            self._add(self._rollup(CostHourlyRollup, **hours), HOURLY)
        if last < end:
            self.raw(last, end)

    def days(self, first: date | None, last: date | None) -> None:
        """Whole UTC days [first, last) (None: unbounded)."""
        assert self.plan is not None
        span: dict[str, date] = {}
        if first is not None:
            span["day__gte"] = first
        if last is not None:
            span["day__lt"] = last
        self.result.rollup_ranges += 1
        plan = self.plan
        if plan.tag_sets:
            self._add(self._tag_sets(CostTagSetDailyRollup, **span), TAG_SETS)
            return
        if plan.tag_key is None:
            self._add(self._rollup(CostDailyRollup, **span), DAILY)
            return
        tagged = self._rollup(CostTagRollup, tag_key=plan.tag_key, **span)
        if plan.tag_value is not None:
            tagged = tagged.filter(tag_value=plan.tag_value)
        self._add(tagged, TAGGED, net_out=plan.absent_group)
        if plan.absent_group:
            self._add(self._rollup(CostDailyRollup, **span), DAILY)


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
