"""The rollups of counted cost: daily, hourly and per tag, kept current on every write (in
the writer's transaction) and corrected from the raw table by the repair job.

- daily: per tenant, UTC day and dimension tuple;
- hourly: the same per UTC hour (reports read it for the whole hours of a partial day);
- tags: per tenant, tag key, UTC day, tag value and dimension tuple; a record adds to one row
  per tag it carries (tag groupings and a single tag filter read it);
- tag sets, daily and hourly: per tenant, period, whole `tags` object and currency, without
  the other dimensions (queries on any number of tag keys and no other dimension read them).

A write adds signed deltas, pre-aggregated in Python: one statement per rollup table.
"""

import hashlib
import json
import operator
import uuid
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
    ROLLUP_KEY,
    CostDailyRollup,
    CostHourlyRollup,
    CostRecord,
    CostTagRollup,
    CostTagSetDailyRollup,
    CostTagSetHourlyRollup,
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
    #: how many leading key columns the unique constraint has (the rest follow from them)
    unique_columns: int = 0

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def unique(self) -> tuple[str, ...]:
        return self.key[: self.unique_columns] if self.unique_columns else self.key

    @property
    def period(self) -> str:
        """The period column: "day" (a date) or "hour" (a UTC instant)."""
        return "hour" if "hour" in self.key else "day"

    def period_lookup(self, start: datetime, end: datetime) -> dict[str, Any]:
        """ORM lookups of this rollup's rows for the UTC day [start, end)."""
        if self.period == "hour":
            return {"hour__gte": start, "hour__lt": end}
        return {"day": start.date()}


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
TAG_SETS_DAILY = Rollup(
    CostTagSetDailyRollup,
    ("tenant_id", "day", "tag_hash", "currency", "tags"),
    ("text", "date", "uuid", "text", "jsonb"),
    unique_columns=4,
)
TAG_SETS_HOURLY = Rollup(
    CostTagSetHourlyRollup,
    ("tenant_id", "hour", "tag_hash", "currency", "tags"),
    ("text", "timestamptz", "uuid", "text", "jsonb"),
    unique_columns=4,
)
#: Writers lock rollup rows table by table in this order, keys sorted: no deadlocks.
ROLLUPS = (DAILY, HOURLY, TAGS, TAG_SETS_DAILY, TAG_SETS_HOURLY)


def tag_set_text(tags: dict[str, Any]) -> str:
    """The canonical text of a tag set: keys in code point order, no spaces, JSON escapes
    (what `_TAG_SET_TEXT_SQL` builds from jsonb, byte for byte)."""
    return json.dumps(tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tag_set_hash(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha256(text.encode("utf-8")).digest()[:16])


#: `tag_set_text` of a record's `r.tags`, in SQL: jsonb's own key order is by length first,
#: so the keys are sorted here; `to_json` and jsonb's text form escape as `json.dumps` does.
_TAG_SET_TEXT_SQL = (
    "COALESCE((SELECT '{' || string_agg(to_json(e.key)::text || ':' || e.value::text, ',' "
    "ORDER BY e.key COLLATE \"C\") || '}' FROM jsonb_each(r.tags) e), '{}')"
)
_TAG_SET_HASH_SQL = (
    f"encode(substring(sha256(convert_to({_TAG_SET_TEXT_SQL}, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid"
)

Deltas = dict[Rollup, dict[tuple[Any, ...], list[Any]]]

#: A record row's dimension tuple, in the order of the rollups' keys.
_rollup_key = operator.itemgetter(*ROLLUP_KEY)


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
    sets_daily: dict[tuple[Any, ...], list[Any]] = {}
    sets_hourly: dict[tuple[Any, ...], list[Any]] = {}
    hashes: dict[str, uuid.UUID] = {}
    for row in rows:
        ts: datetime = row["timestamp"].astimezone(UTC)
        day = ts.date()
        hour = ts.replace(minute=0, second=0, microsecond=0)
        dims = _rollup_key(row)
        usage = row["usage_quantity"]
        values = [
            row["cost_amount"] if sign > 0 else -row["cost_amount"],
            Decimal(0) if usage is None else (usage if sign > 0 else -usage),
            sign,
        ]
        tenant = row["tenant_id"]
        _add(daily, (tenant, day, *dims), values)
        _add(hourly, (tenant, hour, *dims), values)
        for tag_key, tag_value in row["tags"].items():
            if isinstance(tag_value, str):
                _add(tagged, (tenant, tag_key, day, tag_value, *dims), values)
        text = tag_set_text(row["tags"])
        digest = hashes.get(text)
        if digest is None:
            digest = hashes[text] = tag_set_hash(text)
        _add(sets_daily, (tenant, day, digest, row["currency"], text), values)
        _add(sets_hourly, (tenant, hour, digest, row["currency"], text), values)
    return {
        DAILY: daily,
        HOURLY: hourly,
        TAGS: tagged,
        TAG_SETS_DAILY: sets_daily,
        TAG_SETS_HOURLY: sets_hourly,
    }


def apply_rollup_deltas(deltas: Deltas) -> None:
    """Add to the rollups in the caller's transaction: one statement per table."""
    for rollup in ROLLUPS:
        entries = deltas.get(rollup)
        if entries:
            _apply(rollup, entries)


def _upsert_sql(rollup: Rollup, source: str) -> str:
    """INSERT the rows of `source` (key columns, then cost, usage, count), adding them to the
    rows that exist: the one statement that changes a rollup, for writers and the repair."""
    table = rollup.table
    cols = (*rollup.key, "total_cost", "total_usage", "record_count")
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) {source} "
        f"ON CONFLICT ({', '.join(rollup.unique)}) DO UPDATE SET "
        f"total_cost = {table}.total_cost + EXCLUDED.total_cost, "
        f"total_usage = {table}.total_usage + EXCLUDED.total_usage, "
        f"record_count = {table}.record_count + EXCLUDED.record_count"
    )


def _apply(rollup: Rollup, entries: dict[tuple[Any, ...], list[Any]]) -> None:
    keys = sorted(entries)
    if connection.vendor == "postgresql":
        types = (*rollup.types, "numeric", "numeric", "bigint")
        # One array per column: a handful of parameters however many keys there are.
        params = [list(c) for c in zip(*(k + tuple(entries[k]) for k in keys), strict=True)]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        with connection.cursor() as cursor:
            source = f"SELECT * FROM unnest({unnest})"  # noqa: S608  (constants of this module)
            cursor.execute(_upsert_sql(rollup, source), params)
        return
    # SQLite stores decimals as REAL: add in Python so sums stay exact (one writer at a time).
    manager = rollup.model._default_manager
    for key in keys:
        cost, usage, count = entries[key]
        lookup = dict(zip(rollup.unique, key, strict=False))
        row: Any = manager.filter(**lookup).first()
        if row is None:
            carried = dict(zip(rollup.key, key, strict=True))
            if "tags" in carried:
                carried["tags"] = json.loads(carried["tags"])
            carried.update(total_cost=cost, total_usage=usage, record_count=count)
            manager.create(**carried)
        else:
            row.total_cost = WIDE.add(row.total_cost, cost)
            row.total_usage = WIDE.add(row.total_usage, usage)
            row.record_count += count
            row.save(update_fields=["total_cost", "total_usage", "record_count"])


#: A record's period, in SQL (the record aliased `r`), by period column.
_PERIOD_SQL = {
    "day": "(r.timestamp AT TIME ZONE 'UTC')::date",
    "hour": "date_trunc('hour', r.timestamp, 'UTC')",
}


def _sums_sql(rollup: Rollup, relation: str, where: str) -> str:
    """PostgreSQL: per key of `rollup`, the sums of the counted records of `relation` (aliased
    `r`) that match `where` — what `rollup_deltas` computes in Python, as one GROUP BY."""
    dims = ", ".join(f"r.{d}" for d in (*DIMENSIONS, "currency"))
    sums = (
        "SUM(r.cost_amount) AS total_cost, COALESCE(SUM(r.usage_quantity), 0) AS total_usage, "
        "COUNT(*) AS record_count"
    )
    period = f"{_PERIOD_SQL[rollup.period]} AS {rollup.period}"
    if rollup in (TAG_SETS_DAILY, TAG_SETS_HOURLY):
        return (
            f"SELECT r.tenant_id, {period}, {_TAG_SET_HASH_SQL} AS tag_hash, "  # noqa: S608
            f"r.currency, r.tags, {sums} FROM {relation} r WHERE r.counted AND {where} "
            "GROUP BY r.tenant_id, 2, r.tags, r.currency"
        )
    if rollup is TAGS:
        return (
            f"SELECT r.tenant_id, t.key AS tag_key, {period}, "  # noqa: S608  (constants)
            f"t.value #>> '{{}}' AS tag_value, {dims}, {sums} "
            f"FROM {relation} r CROSS JOIN LATERAL jsonb_each(r.tags) t "
            f"WHERE r.counted AND {where} AND jsonb_typeof(t.value) = 'string' "
            f"GROUP BY r.tenant_id, t.key, 3, tag_value, {dims}"
        )
    return (
        f"SELECT r.tenant_id, {period}, {dims}, {sums} FROM {relation} r "  # noqa: S608
        f"WHERE r.counted AND {where} GROUP BY r.tenant_id, 2, {dims}"
    )


def _lock_order(rollup: Rollup) -> str:
    """The writers' order of a rollup's keys (Python's: text by code point)."""
    return ", ".join(
        f'{c} COLLATE "C"' if t == "text" else c
        for c, t in zip(rollup.key, rollup.types, strict=True)
    )


def add_rows_of(relation: str) -> None:
    """PostgreSQL: add every counted record of `relation` (a staging table holding just the
    records this transaction inserted) to the rollups, summed in SQL: one statement per table,
    keys locked in the writers' order. The lean batch path's form of
    `apply_rollup_deltas(rollup_deltas(rows))`: no per-key parameters to send."""
    with connection.cursor() as cursor:
        for rollup in ROLLUPS:
            source = (
                f"SELECT * FROM ({_sums_sql(rollup, relation, 'TRUE')}) s "  # noqa: S608
                f"ORDER BY {_lock_order(rollup)}"
            )
            cursor.execute(_upsert_sql(rollup, source))


# --- Repair ---------------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


#: The advisory lock that keeps two repairs apart (each would add the same drift).
REPAIR_LOCK = 0x636F737473  # "costs"


def repair_rollups(*, tenant_id: str | None = None, days: Sequence[date] = ()) -> int:
    """Make every rollup of the given days (every day with a daily rollup when none are
    given) equal to the raw table again, without blocking writers. Returns the number of days
    repaired.

    Each rollup key's drift (what the raw table sums to minus what the rollup holds) is
    computed at one snapshot and added to the rollup with the writers' own upsert. Writers
    change records and rollups in one transaction, so a write is either in the snapshot on
    both sides or on neither: the drift of a key does not change when writes commit, and
    adding it makes the rollup exact whatever was written meanwhile."""
    tenant = {} if tenant_id is None else {"tenant_id": tenant_id}
    if not days:
        days = sorted(
            set(CostDailyRollup.objects.filter(**tenant).values_list("day", flat=True).distinct())
        )
    for day in days:
        start, end = day_bounds(day)
        if connection.vendor == "postgresql":
            _repair_day_sql(day, start, end, tenant_id)
            continue
        # SQLite: one writer at a time, so the whole day in one transaction is a snapshot.
        with transaction.atomic():
            apply_rollup_deltas(_drift(start, end, tenant))
    return len(days)


def _drift(start: datetime, end: datetime, tenant: dict[str, str]) -> Deltas:
    """Per key of each rollup: the raw table's sums over [start, end) minus the stored row."""
    records = CostRecord.objects.filter(
        **tenant, counted=True, timestamp__gte=start, timestamp__lt=end
    )
    rows = records.values(
        "tenant_id", "timestamp", *DIMENSIONS, "currency", "cost_amount", "usage_quantity", "tags"
    )
    drift = rollup_deltas(list(rows))
    for rollup in ROLLUPS:
        entries = drift[rollup]
        stored = rollup.model._default_manager.filter(**tenant, **rollup.period_lookup(start, end))
        for row in stored.values_list(*rollup.key, "total_cost", "total_usage", "record_count"):
            cost, usage, count = row[-3:]
            key = tuple(tag_set_text(v) if isinstance(v, dict) else v for v in row[:-3])
            _add(entries, key, [-cost, -usage, -count])
        drift[rollup] = {key: values for key, values in entries.items() if any(values)}
    return drift


def _repair_day_sql(day: date, start: datetime, end: datetime, tenant_id: str | None) -> None:
    """One day's rollups corrected from the raw table (PostgreSQL): per table, one statement
    that sums the day's records per key, joins the stored rows, and adds the differences.

    The statement's snapshot is the one the drift is exact at; its upsert changes the latest
    row versions (READ COMMITTED), so writes committed after the snapshot are kept. Writers
    are never blocked by the summing; they wait only for the row locks of corrected keys, which
    the statement takes in the writers' order (keys sorted by code point, i.e. `COLLATE "C"`)
    and holds for that one table: no deadlock, no write waits for the repair. The ORDER BY is
    on the join's output (no index has that order), so it is a Sort of the whole result: the
    upsert starts only once the summing is done.
    """
    where = "r.timestamp >= %s AND r.timestamp < %s"
    bounds: list[Any] = [start, end]
    stored_tenant = ""
    if tenant_id is not None:
        where += " AND r.tenant_id = %s"
        stored_tenant = " AND tenant_id = %s"
        bounds.append(tenant_id)
    stored_where: dict[str, tuple[str, list[Any]]] = {
        "day": ("day = %s", [day]),
        "hour": ("hour >= %s AND hour < %s", [start, end]),
    }
    values = ("total_cost", "total_usage", "record_count")
    differ = " OR ".join(f"COALESCE(raw.{v}, 0) <> COALESCE(s.{v}, 0)" for v in values)
    for rollup in ROLLUPS:
        key = ", ".join(rollup.key)
        deltas = ", ".join(f"COALESCE(raw.{v}, 0) - COALESCE(s.{v}, 0)" for v in values)
        stored, stored_params = stored_where[rollup.period]
        source = (
            f"SELECT {key}, {deltas} FROM ({_sums_sql(rollup, CostRecord._meta.db_table, where)}) "  # noqa: S608  (constants of this module)
            f"raw FULL JOIN (SELECT {key}, {', '.join(values)} FROM {rollup.table} "
            f"WHERE {stored}{stored_tenant}) s USING ({key}) "
            f"WHERE {differ} ORDER BY {_lock_order(rollup)}"
        )
        params = bounds + stored_params + ([tenant_id] if tenant_id is not None else [])
        with transaction.atomic(), connection.cursor() as cursor:
            # A second repair waits here, then sums at a snapshot that sees this one's fix.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [REPAIR_LOCK])
            cursor.execute(_upsert_sql(rollup, source), params)


def refresh_rollups(*, now: datetime | None = None, lookback_days: int = 2) -> int:
    """The scheduled repair: correct the last few days (late back-fills and any drift)."""
    now = now or clock.now()
    today = now.astimezone(UTC).date()
    return repair_rollups(days=[today - timedelta(days=i) for i in range(lookback_days + 1)])
