"""The rollups of counted cost: daily, hourly and per tag, kept current on every write (in
the writer's transaction) and rebuilt from the raw table by the repair job.

- daily: per tenant, UTC day and dimension tuple;
- hourly: the same per UTC hour (reports read it for the whole hours of a partial day);
- tags: per tenant, tag key, UTC day, tag value and dimension tuple; a record adds to one row
  per tag it carries (tag groupings and a single tag filter read it).

A write adds signed deltas, pre-aggregated in Python: one statement per rollup table.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal
from typing import Any

from django.db import connection, models, transaction

from budgeting_site.platform import clock
from budgeting_site.platform.money import WIDE_PRECISION
from costs.models import (
    DIMENSIONS,
    CostDailyRollup,
    CostHourlyRollup,
    CostRecord,
    CostTagRollup,
)

#: Sums of up to 38 digits stay exact.
WIDE = Context(prec=WIDE_PRECISION)


@dataclass(frozen=True)
class Rollup:
    model: type[models.Model]
    #: the unique key, in the order of the delta keys
    key: tuple[str, ...]
    #: PostgreSQL types of the key columns
    types: tuple[str, ...]

    @property
    def table(self) -> str:
        return self.model._meta.db_table


_DIM_TYPES = ("text",) * (len(DIMENSIONS) + 1)
DAILY = Rollup(
    CostDailyRollup,
    ("tenant_id", "day", *DIMENSIONS, "currency"),
    ("text", "date", *_DIM_TYPES),
)
HOURLY = Rollup(
    CostHourlyRollup,
    ("tenant_id", "hour", *DIMENSIONS, "currency"),
    ("text", "timestamptz", *_DIM_TYPES),
)
TAGS = Rollup(
    CostTagRollup,
    ("tenant_id", "tag_key", "day", "tag_value", *DIMENSIONS, "currency"),
    ("text", "text", "date", "text", *_DIM_TYPES),
)
#: Writers lock rollup rows table by table in this order, keys sorted: no deadlocks.
ROLLUPS = (DAILY, HOURLY, TAGS)

Deltas = dict[Rollup, dict[tuple[Any, ...], list[Any]]]


def _add(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], values: list[Any]) -> None:
    entry = into.get(key)
    if entry is None:
        into[key] = list(values)
    else:
        entry[0] = WIDE.add(entry[0], values[0])
        entry[1] = WIDE.add(entry[1], values[1])
        entry[2] += values[2]


def rollup_deltas(rows: Sequence[dict[str, Any]], sign: int = 1) -> Deltas:
    """What `rows` (record rows) add to each rollup (`sign=-1`: take away)."""
    daily: dict[tuple[Any, ...], list[Any]] = {}
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    tagged: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        ts: datetime = row["timestamp"].astimezone(UTC)
        day = ts.date()
        dims = (
            row["resource_type"],
            row["service_name"],
            row["region"],
            row["attributed_to_type"],
            row["attributed_to_id"],
            row["currency"],
        )
        usage = row["usage_quantity"]
        values = [
            row["cost_amount"] if sign > 0 else -row["cost_amount"],
            Decimal(0) if usage is None else (usage if sign > 0 else -usage),
            sign,
        ]
        tenant = row["tenant_id"]
        _add(daily, (tenant, day, *dims), values)
        _add(hourly, (tenant, ts.replace(minute=0, second=0, microsecond=0), *dims), values)
        for tag_key, tag_value in row["tags"].items():
            if isinstance(tag_value, str):
                _add(tagged, (tenant, tag_key, day, tag_value, *dims), values)
    return {DAILY: daily, HOURLY: hourly, TAGS: tagged}


def apply_rollup_deltas(deltas: Deltas) -> None:
    """Add to the rollups in the caller's transaction: one statement per table."""
    for rollup in ROLLUPS:
        entries = deltas.get(rollup)
        if entries:
            _apply(rollup, entries)


def _apply(rollup: Rollup, entries: dict[tuple[Any, ...], list[Any]]) -> None:
    keys = sorted(entries)
    if connection.vendor == "postgresql":
        table = rollup.table
        cols = (*rollup.key, "total_cost", "total_usage", "record_count")
        types = (*rollup.types, "numeric", "numeric", "bigint")
        # One array per column: a handful of parameters however many keys there are.
        params = [list(c) for c in zip(*(k + tuple(entries[k]) for k in keys), strict=True)]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) "  # noqa: S608  (constants of this module)
            f"SELECT * FROM unnest({unnest}) "
            f"ON CONFLICT ({', '.join(rollup.key)}) DO UPDATE SET "
            f"total_cost = {table}.total_cost + EXCLUDED.total_cost, "
            f"total_usage = {table}.total_usage + EXCLUDED.total_usage, "
            f"record_count = {table}.record_count + EXCLUDED.record_count"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    # SQLite stores decimals as REAL: add in Python so sums stay exact (one writer at a time).
    manager = rollup.model._default_manager
    for key in keys:
        cost, usage, count = entries[key]
        lookup = dict(zip(rollup.key, key, strict=True))
        row: Any = manager.filter(**lookup).first()
        if row is None:
            manager.create(**lookup, total_cost=cost, total_usage=usage, record_count=count)
        else:
            row.total_cost = WIDE.add(row.total_cost, cost)
            row.total_usage = WIDE.add(row.total_usage, usage)
            row.record_count += count
            row.save(update_fields=["total_cost", "total_usage", "record_count"])


# --- Repair ---------------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def rebuild_rollups(*, tenant_id: str | None = None, days: Sequence[date] = ()) -> int:
    """Recompute every rollup of the given days (every day with a daily rollup when none are
    given) from the raw table, replacing what is stored. Returns the number of days rebuilt."""
    tenant = {} if tenant_id is None else {"tenant_id": tenant_id}
    if not days:
        days = sorted(
            set(CostDailyRollup.objects.filter(**tenant).values_list("day", flat=True).distinct())
        )
    for day in days:
        start, end = day_bounds(day)
        stored = {
            DAILY: CostDailyRollup.objects.filter(**tenant, day=day),
            HOURLY: CostHourlyRollup.objects.filter(**tenant, hour__gte=start, hour__lt=end),
            TAGS: CostTagRollup.objects.filter(**tenant, day=day),
        }
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Writers wait for the rebuild (a writer in flight is waited for first), then
                # add their deltas to the rebuilt rows; readers are not blocked.
                tables = ", ".join(r.table for r in ROLLUPS)
                with connection.cursor() as cursor:
                    cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
            for rollup in ROLLUPS:
                stored[rollup].delete()
            if connection.vendor == "postgresql":
                _rebuild_day_sql(day, start, end, tenant_id)
                continue
            records = CostRecord.objects.filter(
                **tenant, counted=True, timestamp__gte=start, timestamp__lt=end
            )
            rows = list(
                records.values(
                    "tenant_id", "timestamp", *DIMENSIONS, "currency", "cost_amount",
                    "usage_quantity", "tags",
                )
            )  # fmt: skip
            apply_rollup_deltas(rollup_deltas(rows))
    return len(days)


def _rebuild_day_sql(day: date, start: datetime, end: datetime, tenant_id: str | None) -> None:
    """One day's rollups from the raw table, one INSERT ... SELECT per table (PostgreSQL)."""
    records = CostRecord._meta.db_table
    dims = ", ".join(f"r.{d}" for d in (*DIMENSIONS, "currency"))
    where = "r.counted AND r.timestamp >= %s AND r.timestamp < %s" + (
        " AND r.tenant_id = %s" if tenant_id is not None else ""
    )
    bounds: list[Any] = [start, end] + ([tenant_id] if tenant_id is not None else [])
    sums = "SUM(r.cost_amount), COALESCE(SUM(r.usage_quantity), 0), COUNT(*)"
    statements: list[tuple[Rollup, str, list[Any]]] = [
        (
            DAILY,
            f"SELECT r.tenant_id, %s::date, {dims}, {sums} FROM {records} r "  # noqa: S608
            f"WHERE {where} GROUP BY r.tenant_id, {dims}",
            [day, *bounds],
        ),
        (
            HOURLY,
            f"SELECT r.tenant_id, date_trunc('hour', r.timestamp, 'UTC') AS hour, {dims}, "  # noqa: S608
            f"{sums} FROM {records} r WHERE {where} GROUP BY r.tenant_id, hour, {dims}",
            bounds,
        ),
        (
            TAGS,
            f"SELECT r.tenant_id, t.key, %s::date, t.value #>> '{{}}' AS tag_value, {dims}, "  # noqa: S608
            f"{sums} FROM {records} r CROSS JOIN LATERAL jsonb_each(r.tags) t "
            f"WHERE {where} AND jsonb_typeof(t.value) = 'string' "
            f"GROUP BY r.tenant_id, t.key, tag_value, {dims}",
            [day, *bounds],
        ),
    ]
    with connection.cursor() as cursor:
        for rollup, select, params in statements:
            cols = (*rollup.key, "total_cost", "total_usage", "record_count")
            cursor.execute(f"INSERT INTO {rollup.table} ({', '.join(cols)}) {select}", params)


def refresh_rollups(*, now: datetime | None = None, lookback_days: int = 2) -> int:
    """The scheduled repair: rebuild the last few days (late back-fills and any drift)."""
    now = now or clock.now()
    today = now.astimezone(UTC).date()
    return rebuild_rollups(days=[today - timedelta(days=i) for i in range(lookback_days + 1)])
