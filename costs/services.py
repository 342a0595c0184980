"""Every write of the costs app: recording (one and in batches), reversals, allocations and
amortization, anomaly detection, and the operators' reference tables. Each write keeps the
rollups (costs/rollups.py) current in its own transaction.

A service owns its transaction and writes its receipt (and events, alerts) inside it.
"""

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction

from budgeting_site.platform import clock
from budgeting_site.platform.errors import (
    Conflict,
    DomainError,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from budgeting_site.platform.metrics import DECISIONS
from costs import budget_link, rollups
from costs.exceptions import (
    AllocationInvalid,
    CostRecordNotFound,
    FxRateMissing,
    RecordNotReversible,
    UnitPriceMissing,
)
from costs.fx import FxTable, exact_convert, to_storage
from costs.models import CostDailyRollup, CostRecord, FxRate, UnitPrice, new_record_id
from costs.pricing import PriceBook
from costs.rollups import apply_rollup_deltas, rollup_deltas
from costs.validation import ItemInvalid, RecordInput, parse_record

logger = logging.getLogger(__name__)

GATE = "cost-tracking"
MAX_BATCH = 1000
RETRIES = 4

#: Columns of costs_costrecord in insert order (the model's field names are its columns).
RECORD_COLUMNS = (
    "record_id",
    "tenant_id",
    "idempotency_key",
    "kind",
    "resource_type",
    "resource_id",
    "service_name",
    "region",
    "attributed_to_type",
    "attributed_to_id",
    "cost_amount",
    "currency",
    "usage_quantity",
    "usage_unit",
    "unit_price",
    "operation_context",
    "tags",
    "timestamp",
    "recorded_at",
    "reservation_id",
    "receipt_id",
    "counted",
    "reversed_by",
    "reversal_reason",
    "reverses",
    "allocation_id",
    "created_by",
)
_CONTEXT_AT = RECORD_COLUMNS.index("operation_context")
_TAGS_AT = RECORD_COLUMNS.index("tags")


# --- Rows -----------------------------------------------------------------------------------


def record_row(**values: Any) -> dict[str, Any]:
    """A complete costs_costrecord row with defaults for everything not given."""
    row: dict[str, Any] = {
        "record_id": new_record_id(),
        "idempotency_key": None,
        "kind": str(CostRecord.Kind.USAGE),
        "resource_id": "",
        "service_name": "",
        "region": "",
        "attributed_to_type": "tenant",
        "currency": "USD",
        "usage_quantity": None,
        "usage_unit": "",
        "unit_price": None,
        "operation_context": {},
        "tags": {},
        "reservation_id": None,
        "receipt_id": None,
        "counted": True,
        "reversed_by": None,
        "reversal_reason": "",
        "reverses": None,
        "allocation_id": None,
        "created_by": "",
    }
    row.update(values)
    return row


def _row_from_input(
    inp: RecordInput,
    *,
    tenant_id: str,
    now: datetime,
    prices: PriceBook,
    fx: FxTable,
    created_by: str,
) -> dict[str, Any]:
    """The row for one validated input; the cost from the unit price when it is not given."""
    timestamp = inp.timestamp or now
    currency = inp.currency
    unit_price = None
    if inp.cost_amount is not None:
        cost = inp.cost_amount
        currency = currency or "USD"
    else:
        assert inp.usage_quantity is not None
        found = prices.price_at(inp.resource_type, inp.usage_unit, timestamp)
        if found is None:
            raise UnitPriceMissing(
                f"No unit price for resource_type {inp.resource_type!r}"
                f"{' and unit ' + repr(inp.usage_unit) if inp.usage_unit else ''} at "
                f"{timestamp:%Y-%m-%dT%H:%M:%SZ}; give cost_amount",
                details={"reason": "COST_CALCULATION_ERROR", "resource_type": inp.resource_type},
            )
        unit_price, price_currency = found
        cost = exact_convert(inp.usage_quantity, unit_price)
        if currency and currency != price_currency:
            cost = exact_convert(cost, fx.rate(price_currency, currency, timestamp))
        currency = currency or price_currency
        cost = to_storage(cost)
    return record_row(
        tenant_id=tenant_id,
        idempotency_key=inp.idempotency_key,
        resource_type=inp.resource_type,
        resource_id=inp.resource_id,
        service_name=inp.service_name,
        region=inp.region,
        attributed_to_type=inp.attributed_to_type,
        attributed_to_id=inp.attributed_to_id,
        cost_amount=cost,
        currency=currency,
        usage_quantity=inp.usage_quantity,
        usage_unit=inp.usage_unit,
        unit_price=unit_price,
        operation_context=inp.operation_context,
        tags=inp.tags,
        timestamp=timestamp,
        recorded_at=now,
        reservation_id=inp.reservation_id,
        created_by=created_by,
    )


def canonical_record(row: dict[str, Any]) -> dict[str, Any]:
    """What a client reads back for a record: the API shape, built from a row dict."""
    if row["reverses"] is not None:
        status = "reversal"
    elif row["reversed_by"] is not None:
        status = "reversed"
    elif not row["counted"]:
        status = "allocated"
    else:
        status = "active"
    return {
        "record_id": row["record_id"],
        "tenant_id": row["tenant_id"],
        "kind": row["kind"],
        "status": status,
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"] or None,
        "service_name": row["service_name"] or None,
        "region": row["region"] or None,
        "attributed_to_type": row["attributed_to_type"],
        "attributed_to_id": row["attributed_to_id"],
        "cost_amount": row["cost_amount"],
        "currency": row["currency"],
        "usage_quantity": row["usage_quantity"],
        "usage_unit": row["usage_unit"] or None,
        "unit_price": row["unit_price"],
        "operation_context": row["operation_context"],
        "tags": row["tags"],
        "timestamp": row["timestamp"],
        "recorded_at": row["recorded_at"],
        "reservation_id": row["reservation_id"],
        "idempotency_key": row["idempotency_key"],
        "reversed_by": row["reversed_by"],
        "reverses": row["reverses"],
        "reversal_reason": row["reversal_reason"] or None,
        "allocation_id": row["allocation_id"],
        "receipt_id": row["receipt_id"],
    }


def record_digest(row: dict[str, Any]) -> str:
    """sha256 of the RFC 8785 form of a created record (what its receipt item names)."""
    from receipts.canonical import canonical_bytes, sha256_prefixed, to_jsonable

    return sha256_prefixed(canonical_bytes(to_jsonable(canonical_record(row))))


# --- Writing rows ---------------------------------------------------------------------------


def _copy_rows(cursor: Any, table: str, rows: Sequence[dict[str, Any]]) -> None:
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    # Identifiers are constants of this module; values go through COPY's own format.
    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            values = [row[c] for c in RECORD_COLUMNS]
            values[_CONTEXT_AT] = dumps(values[_CONTEXT_AT])
            values[_TAGS_AT] = dumps(values[_TAGS_AT])
            copy.write_row(values)


def insert_records(rows: Sequence[dict[str, Any]]) -> None:
    """All rows in one statement: COPY on PostgreSQL (no per-parameter parsing, the leanest
    bulk insert there is), a multi-row INSERT elsewhere. A duplicate idempotency key raises
    IntegrityError; callers retry and then see the committed first writer."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with (
            connection.wrap_database_errors,  # psycopg's errors as Django's (IntegrityError)
            connection.cursor() as cursor,
        ):
            _copy_rows(cursor, CostRecord._meta.db_table, rows)
        return
    CostRecord.objects.bulk_create([CostRecord(**row) for row in rows], batch_size=500)


#: The session's staging table of the batch insert (emptied at every commit).
STAGING_TABLE = "costs_record_staging"


def insert_new_records(tenant_id: str, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert the rows (each with an idempotency key) whose key the tenant has not used yet;
    returns the keys inserted.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING, in key order (concurrent writers of overlapping batches take the key
    locks in one order): a key another transaction is writing is waited for, then skipped.
    Elsewhere: the keys in use (one query), then one multi-row INSERT.
    Until the transaction ends, `count_inserted` adds what was inserted to the rollups."""
    if not rows:
        return set()
    if connection.vendor == "postgresql":
        table = CostRecord._meta.db_table
        with connection.wrap_database_errors, connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (LIKE {table}) "
                "ON COMMIT DELETE ROWS"
            )
            _copy_rows(cursor, STAGING_TABLE, rows)
            cursor.execute(
                f"INSERT INTO {table} SELECT * FROM {STAGING_TABLE} "  # noqa: S608
                "ORDER BY idempotency_key "
                "ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
                "DO NOTHING RETURNING idempotency_key"
            )
            inserted = {key for (key,) in cursor.fetchall()}
            if len(inserted) < len(rows):
                # The staging table keeps just what was inserted (`count_inserted` reads it).
                cursor.execute(
                    f"DELETE FROM {STAGING_TABLE} WHERE idempotency_key <> ALL(%s)",  # noqa: S608
                    [list(inserted)],
                )
            return inserted
    used = keys_in_use(tenant_id, [r["idempotency_key"] for r in rows])
    new = [r for r in rows if r["idempotency_key"] not in used]
    insert_records(new)
    return {r["idempotency_key"] for r in new}


def count_inserted(rows: Sequence[dict[str, Any]]) -> None:
    """Add the rows `insert_new_records` inserted in this transaction to the rollups: on
    PostgreSQL summed in SQL from its staging table, which holds just those rows (nothing
    per key crosses the wire); elsewhere from `rows`."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        rollups.add_rows_of(STAGING_TABLE)
    else:
        apply_rollup_deltas(rollup_deltas(rows))


def keys_in_use(tenant_id: str, keys: list[str]) -> dict[str, uuid.UUID]:
    """idempotency key -> record id of the keys already used in the tenant (one query)."""
    if not keys:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT idempotency_key, record_id FROM {CostRecord._meta.db_table} "  # noqa: S608
                "WHERE tenant_id = %s AND idempotency_key = ANY(%s)",
                [tenant_id, keys],
            )
            return dict(cursor.fetchall())
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(keys), 500):
        found.update(
            CostRecord.objects.filter(
                tenant_id=tenant_id, idempotency_key__in=keys[start : start + 500]
            ).values_list("idempotency_key", "record_id")
        )
    return found


def _spending(row: dict[str, Any], sign: int = 1) -> budget_link.Spending:
    return budget_link.Spending(
        record_id=row["record_id"],
        amount=sign * row["cost_amount"],
        currency=row["currency"],
        timestamp=row["timestamp"],
        attributed_to_type=row["attributed_to_type"],
        attributed_to_id=row["attributed_to_id"],
        operation_context=row["operation_context"],
    )


def _is_retriable(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    cause = getattr(exc, "__cause__", None)
    code = getattr(cause, "sqlstate", None) or getattr(getattr(cause, "diag", None), "sqlstate", "")
    return code in {"40001", "40P01"}


def _emit_receipt(**kwargs: Any) -> Any:
    from receipts.services import emit_receipt

    return emit_receipt(gate_id=GATE, **kwargs)


def _receipt_inputs(row: dict[str, Any]) -> dict[str, Any]:
    # Ids and amounts only: tags and operation context may hold personal data.
    return {
        "operation": "record",
        "resource_type": row["resource_type"],
        "usage_quantity": row["usage_quantity"],
        "usage_unit": row["usage_unit"],
        "currency": row["currency"],
        "attributed_to_type": row["attributed_to_type"],
        "attributed_to_id": row["attributed_to_id"],
        "timestamp": row["timestamp"],
        "reservation_id": row["reservation_id"],
        "idempotency_key": row["idempotency_key"],
    }


# --- Recording ------------------------------------------------------------------------------


@dataclass
class RecordOutcome:
    record: CostRecord
    created: bool


def record_cost(*, tenant_id: str, data: Any, actor: dict[str, Any]) -> RecordOutcome:
    """Record one cost: durable, its hold settled or its spending applied, with a receipt.

    A repeated `idempotency_key` returns the first record (created=False).
    """
    now = clock.now()
    inp = parse_record(data, tenant_id=tenant_id, now=now)
    row = _row_from_input(
        inp,
        tenant_id=tenant_id,
        now=now,
        prices=PriceBook(tenant_id),
        fx=FxTable(tenant_id),
        created_by=actor.get("principal", ""),
    )
    for attempt in range(RETRIES):
        try:
            with transaction.atomic():
                if inp.idempotency_key is not None:
                    first = CostRecord.objects.filter(
                        tenant_id=tenant_id, idempotency_key=inp.idempotency_key
                    ).first()
                    if first is not None:
                        return RecordOutcome(first, False)
                receipt_id = uuid.uuid4()
                row["receipt_id"] = receipt_id
                if inp.reservation_id is not None:
                    budget_link.settle_hold(
                        tenant_id=tenant_id,
                        reservation_id=inp.reservation_id,
                        spending=_spending(row),
                        actor=actor,
                    )
                else:
                    budget_link.apply_spending(
                        tenant_id=tenant_id, items=[_spending(row)], actor=actor
                    )
                _emit_receipt(
                    tenant_id=tenant_id,
                    inputs={**_receipt_inputs(row), "cost_amount": inp.cost_amount},
                    result={
                        "record_id": row["record_id"],
                        "cost_amount": row["cost_amount"],
                        "currency": row["currency"],
                        "unit_price": row["unit_price"],
                        "recorded_at": row["recorded_at"],
                        "record_sha256": record_digest(row),
                    },
                    decision_status="pass",
                    rationale="cost recorded",
                    actor=actor,
                    receipt_id=receipt_id,
                    timestamp_utc=now,
                )
                insert_records([row])
                apply_rollup_deltas(rollup_deltas([row]))
            break
        except (IntegrityError, OperationalError) as exc:
            if not _is_retriable(exc) or attempt == RETRIES - 1:
                if _is_retriable(exc):
                    raise ServiceUnavailable("Busy recording this cost; retry") from exc
                raise
            logger.info("costs.record_retry", extra={"attempt": attempt + 1})
    DECISIONS.labels(GATE, "recorded").inc()
    return RecordOutcome(CostRecord.objects.get(pk=row["record_id"]), True)


@dataclass
class BatchItemResult:
    index: int
    idempotency_key: str | None
    status: str
    record_id: uuid.UUID | None = None
    error_code: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "record_id": self.record_id,
            "error_code": self.error_code,
            "message": self.message,
        }


@dataclass
class BatchOutcome:
    batch_id: uuid.UUID
    receipt_id: uuid.UUID
    results: list[BatchItemResult]
    processed_count: int = 0
    duplicate_count: int = 0
    failed_count: int = 0
    created_rows: list[dict[str, Any]] = field(default_factory=list)


def _failure(index: int, key: Any, exc: DomainError) -> BatchItemResult:
    code = exc.error_code
    if isinstance(exc, UnitPriceMissing | FxRateMissing):
        code = "COST_CALCULATION_ERROR"
    return BatchItemResult(
        index=index,
        idempotency_key=key if isinstance(key, str) else None,
        status="failed",
        error_code=code,
        message=exc.message,
    )


def record_batch(*, tenant_id: str, items: Any, actor: dict[str, Any]) -> BatchOutcome:
    """Record up to 1000 costs with per-item idempotency keys and partial success.

    Lean path: validate in Python, one insert that skips the keys already used (COPY into a
    staging table, then INSERT ... ON CONFLICT DO NOTHING), one SELECT of the first records of
    the duplicates (when there are any), one receipt, one upsert per rollup table. Holds are
    settled item by item (each in a savepoint, so a failing settlement fails only its item).
    """
    if not isinstance(items, list):
        raise ValidationFailed("records must be a list", details={"records": ["must be a list"]})
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(
            f"A batch holds at most {MAX_BATCH} records, got {len(items)}",
            details={"records": [f"at most {MAX_BATCH} items"], "count": len(items)},
        )
    if not items:
        raise ValidationFailed("records must not be empty", details={"records": ["empty"]})
    now = clock.now()
    prices = PriceBook(tenant_id)
    fx = FxTable(tenant_id)
    created_by = actor.get("principal", "")

    failures: dict[int, BatchItemResult] = {}
    candidates: list[tuple[int, dict[str, Any]]] = []
    first_index_of_key: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for index, data in enumerate(items):
        key = data.get("idempotency_key") if isinstance(data, dict) else None
        try:
            inp = parse_record(data, tenant_id=tenant_id, now=now, require_key=True)
            assert inp.idempotency_key is not None
            if inp.idempotency_key in first_index_of_key:
                repeats[index] = first_index_of_key[inp.idempotency_key]
                continue
            row = _row_from_input(
                inp, tenant_id=tenant_id, now=now, prices=prices, fx=fx, created_by=created_by
            )
        except (ItemInvalid, ValidationFailed) as exc:
            failures[index] = _failure(index, key, exc)
            continue
        first_index_of_key[inp.idempotency_key] = index
        candidates.append((index, row))

    batch_id = uuid.uuid4()
    for attempt in range(RETRIES):
        try:
            with transaction.atomic():
                outcome = _record_batch_once(
                    tenant_id=tenant_id,
                    now=now,
                    actor=actor,
                    batch_id=batch_id,
                    count=len(items),
                    candidates=candidates,
                    failures=failures,
                    repeats=repeats,
                )
            DECISIONS.labels(GATE, "recorded").inc(outcome.processed_count)
            DECISIONS.labels(GATE, "duplicate").inc(outcome.duplicate_count)
            DECISIONS.labels(GATE, "failed").inc(outcome.failed_count)
            return outcome
        except (IntegrityError, OperationalError) as exc:
            if not _is_retriable(exc):
                raise
            logger.info("costs.batch_retry", extra={"attempt": attempt + 1})
    raise ServiceUnavailable("Busy recording this batch; retry")


def _record_batch_once(
    *,
    tenant_id: str,
    now: datetime,
    actor: dict[str, Any],
    batch_id: uuid.UUID,
    count: int,
    candidates: list[tuple[int, dict[str, Any]]],
    failures: dict[int, BatchItemResult],
    repeats: dict[int, int],
) -> BatchOutcome:
    failures = dict(failures)
    results: dict[int, BatchItemResult] = {}
    receipt_id = uuid.uuid4()
    # Holds are settled before the insert: only for keys not used yet (a rare, small lookup).
    holding = [row["idempotency_key"] for _, row in candidates if row["reservation_id"]]
    existing = keys_in_use(tenant_id, holding)
    settled: set[str] = set()
    to_insert: list[tuple[int, dict[str, Any]]] = []
    for index, row in candidates:
        key = row["idempotency_key"]
        row = {**row, "receipt_id": receipt_id}
        if row["reservation_id"] is not None:
            if key in existing:
                results[index] = BatchItemResult(index, key, "duplicate", existing[key])
                continue
            try:
                with transaction.atomic():
                    budget_link.settle_hold(
                        tenant_id=tenant_id,
                        reservation_id=row["reservation_id"],
                        spending=_spending(row),
                        actor=actor,
                    )
            except DomainError as exc:
                failures[index] = _failure(index, key, exc)
                continue
            settled.add(key)
        to_insert.append((index, row))

    inserted = insert_new_records(tenant_id, [row for _, row in to_insert])
    if settled - inserted:
        # A concurrent batch wrote a key whose hold this one settled: undo, then retry (the
        # retry sees the key as a duplicate).
        raise IntegrityError("a settled item's key was written concurrently")
    to_create = [(i, row) for i, row in to_insert if row["idempotency_key"] in inserted]
    first_ids = keys_in_use(
        tenant_id,
        [row["idempotency_key"] for _, row in to_insert if row["idempotency_key"] not in inserted],
    )
    for index, row in to_insert:
        key = row["idempotency_key"]
        if key in inserted:
            results[index] = BatchItemResult(index, key, "created", row["record_id"])
        else:
            results[index] = BatchItemResult(index, key, "duplicate", first_ids[key])

    created_rows = [row for _, row in to_create]
    budget_link.apply_spending(
        tenant_id=tenant_id,
        items=[_spending(r) for r in created_rows if r["reservation_id"] is None],
        actor=actor,
    )
    results.update(failures)
    for index, first_index in repeats.items():
        first = results[first_index]
        if first.status == "failed":
            results[index] = BatchItemResult(
                index, first.idempotency_key, "failed", None, first.error_code, first.message
            )
        else:
            results[index] = BatchItemResult(
                index, first.idempotency_key, "duplicate", first.record_id
            )
    ordered = [results[i] for i in range(count)]
    processed = sum(1 for r in ordered if r.status == "created")
    duplicates = sum(1 for r in ordered if r.status == "duplicate")
    failed = count - processed - duplicates
    if failed == 0:
        status = "pass"
    elif processed + duplicates:
        status = "warn"
    else:
        status = "hard_block"
    _emit_receipt(
        tenant_id=tenant_id,
        inputs={"operation": "record_batch", "batch_id": batch_id, "item_count": count},
        result={
            "batch_id": batch_id,
            "processed_count": processed,
            "duplicate_count": duplicates,
            "failed_count": failed,
            "total_cost_by_currency": _totals_by_currency(created_rows),
            "items": [
                {"index": i, "id": r["record_id"], "sha256": record_digest(r)} for i, r in to_create
            ],
        },
        decision_status=status,
        rationale=f"{processed} recorded, {duplicates} duplicate, {failed} failed",
        actor=actor,
        receipt_id=receipt_id,
        timestamp_utc=now,
    )
    count_inserted(created_rows)
    return BatchOutcome(
        batch_id=batch_id,
        receipt_id=receipt_id,
        results=ordered,
        processed_count=processed,
        duplicate_count=duplicates,
        failed_count=failed,
        created_rows=created_rows,
    )


def _totals_by_currency(rows: Sequence[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["cost_amount"]
    return totals


# --- Reversal -------------------------------------------------------------------------------


def _model_row(record: CostRecord) -> dict[str, Any]:
    return {c: getattr(record, c) for c in RECORD_COLUMNS}


def reverse_record(
    *, tenant_id: str, record_id: uuid.UUID, reason: str, actor: dict[str, Any]
) -> CostRecord:
    """Cancel a record with a new one of the opposite amount. The original is kept and
    marked reversed; both leave totals; the budgets it counted toward are adjusted back."""
    now = clock.now()
    with transaction.atomic():
        original = (
            CostRecord.objects.select_for_update().filter(tenant_id=tenant_id, pk=record_id).first()
        )
        if original is None:
            raise CostRecordNotFound()
        if original.kind == CostRecord.Kind.REVERSAL:
            raise RecordNotReversible("A reversal cannot itself be reversed")
        if original.reversed_by is not None:
            raise RecordNotReversible(
                "This record is already reversed",
                details={"reversed_by": str(original.reversed_by)},
            )
        if not original.counted:
            raise RecordNotReversible("This record was allocated; reverse its allocation parts")
        before = _model_row(original)
        receipt_id = uuid.uuid4()
        reversal = record_row(
            tenant_id=tenant_id,
            kind=str(CostRecord.Kind.REVERSAL),
            resource_type=original.resource_type,
            resource_id=original.resource_id,
            service_name=original.service_name,
            region=original.region,
            attributed_to_type=original.attributed_to_type,
            attributed_to_id=original.attributed_to_id,
            cost_amount=-original.cost_amount,
            currency=original.currency,
            usage_quantity=(
                -original.usage_quantity if original.usage_quantity is not None else None
            ),
            usage_unit=original.usage_unit,
            unit_price=original.unit_price,
            operation_context=original.operation_context,
            tags=original.tags,
            timestamp=now,
            recorded_at=now,
            receipt_id=receipt_id,
            counted=False,
            reverses=original.record_id,
            reversal_reason=reason,
            allocation_id=original.allocation_id,
            created_by=actor.get("principal", ""),
        )
        _emit_receipt(
            tenant_id=tenant_id,
            inputs={"operation": "reverse", "record_id": original.record_id},
            result={
                "reversal_record_id": reversal["record_id"],
                "reversed_record_id": original.record_id,
                "cost_amount": reversal["cost_amount"],
                "currency": original.currency,
            },
            decision_status="pass",
            rationale="cost record reversed",
            actor=actor,
            receipt_id=receipt_id,
            timestamp_utc=now,
        )
        insert_records([reversal])
        CostRecord.objects.filter(pk=original.pk).update(
            counted=False, reversed_by=reversal["record_id"], reversal_reason=reason
        )
        apply_rollup_deltas(rollup_deltas([before], sign=-1))
        budget_link.reverse_spending(
            tenant_id=tenant_id,
            original=_spending(before),
            reversal_id=reversal["record_id"],
            reservation_id=original.reservation_id,
            actor=actor,
        )
    return CostRecord.objects.get(pk=reversal["record_id"])


# --- Reference tables (the admin writes through these) --------------------------------------


def set_unit_price(
    *,
    tenant_id: str = "",
    resource_type: str,
    unit_price: Decimal,
    currency: str = "USD",
    usage_unit: str = "",
    effective_from: datetime,
) -> UnitPrice:
    if unit_price < 0:
        raise ValidationFailed("unit_price must be at least 0")
    try:
        with transaction.atomic():
            return UnitPrice.objects.create(
                tenant_id=tenant_id,
                resource_type=resource_type,
                usage_unit=usage_unit,
                unit_price=unit_price,
                currency=currency.upper(),
                effective_from=effective_from,
            )
    except IntegrityError as exc:
        raise Conflict("A unit price with this effective_from already exists") from exc


def set_fx_rate(
    *,
    base_currency: str,
    quote_currency: str,
    rate: Decimal,
    effective_from: datetime,
    tenant_id: str = "",
) -> FxRate:
    if rate <= 0:
        raise ValidationFailed("rate must be positive")
    if base_currency.upper() == quote_currency.upper():
        raise ValidationFailed("base and quote currency must differ")
    try:
        with transaction.atomic():
            return FxRate.objects.create(
                tenant_id=tenant_id,
                base_currency=base_currency.upper(),
                quote_currency=quote_currency.upper(),
                rate=rate,
                effective_from=effective_from,
            )
    except IntegrityError as exc:
        raise Conflict("An FX rate with this effective_from already exists") from exc


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- Allocation and amortization ------------------------------------------------------------


def _target_list(tenant_id: str, targets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, target in enumerate(targets):
        kind = target["attributed_to_type"]
        ident = target.get("attributed_to_id") or ""
        if kind == "tenant":
            if ident and ident != tenant_id:
                raise AllocationInvalid(
                    f"targets[{i}]: a tenant target names the tenant itself",
                    details={"targets": [f"item {i}: attributed_to_id must be {tenant_id}"]},
                )
            ident = tenant_id
        elif not ident:
            raise AllocationInvalid(
                f"targets[{i}]: attributed_to_id is required",
                details={"targets": [f"item {i}: attributed_to_id is required"]},
            )
        if (kind, ident) in seen:
            raise AllocationInvalid(
                f"targets[{i}]: {kind} {ident} is listed twice",
                details={"targets": [f"item {i}: duplicate target"]},
            )
        seen.add((kind, ident))
        out.append(
            {"attributed_to_type": kind, "attributed_to_id": ident, "weight": target.get("weight")}
        )
    return out


def _usage_weights(
    tenant_id: str,
    targets: list[dict[str, Any]],
    resource_type: str,
    start: datetime,
    end: datetime,
) -> list[Decimal]:
    from django.db.models import Sum

    weights = []
    for target in targets:
        used = CostRecord.objects.filter(
            tenant_id=tenant_id,
            counted=True,
            resource_type=resource_type,
            attributed_to_type=target["attributed_to_type"],
            attributed_to_id=target["attributed_to_id"],
            timestamp__gte=start,
            timestamp__lt=end,
        ).aggregate(total=Sum("usage_quantity"))["total"]
        weights.append(Decimal(used or 0))
    return weights


def _source_records(tenant_id: str, source_filter: dict[str, Any]) -> list[CostRecord]:
    from costs.api.params import tags as parse_tags
    from costs.reporting import CostQuery, raw_queryset

    equals = {
        k: source_filter[k]
        for k in (
            "resource_type",
            "service_name",
            "region",
            "attributed_to_type",
            "attributed_to_id",
        )
        if source_filter.get(k)
    }
    query = CostQuery(
        tenant_id=tenant_id,
        currency="USD",
        filters=equals,
        tags=parse_tags(source_filter.get("tag") or []),
    )
    # Metered records only: parts of earlier allocations are not sources again.
    qs = raw_queryset(query).filter(kind=CostRecord.Kind.USAGE)
    if source_filter.get("start_time"):
        qs = qs.filter(timestamp__gte=source_filter["start_time"])
    if source_filter.get("end_time"):
        qs = qs.filter(timestamp__lt=source_filter["end_time"])
    ids = list(qs.values_list("pk", flat=True)[: MAX_ALLOCATION_SOURCES + 1])
    if len(ids) > MAX_ALLOCATION_SOURCES:
        raise AllocationInvalid(
            f"source_filter matches more than {MAX_ALLOCATION_SOURCES} records; narrow it",
            details={"source_filter": [f"more than {MAX_ALLOCATION_SOURCES} records"]},
        )
    # Lock in id order; a record allocated meanwhile is no longer counted and drops out.
    return list(
        CostRecord.objects.select_for_update().filter(pk__in=ids, counted=True).order_by("pk")
    )


MAX_ALLOCATION_SOURCES = 100_000


def create_allocation(
    *, tenant_id: str, spec: dict[str, Any], actor: dict[str, Any]
) -> tuple[Any, list[uuid.UUID]]:
    """Spread a shared cost over targets (SPEC 4.3). The parts add up exactly to the source,
    in the currency's minor unit with largest remainder. Sources given by filter are marked
    allocated (left out of totals) and their budget spending moves to the targets."""
    from costs.models import AmortizationSlice, CostAllocation
    from costs.money import allocate_money

    now = clock.now()
    targets = _target_list(tenant_id, spec["targets"])
    allocation_id = uuid.uuid4()
    receipt_id = uuid.uuid4()
    created_by = actor.get("principal", "")
    with transaction.atomic():
        sources: list[CostRecord] = []
        if spec.get("source_filter") is not None:
            sources = _source_records(tenant_id, spec["source_filter"])
            if not sources:
                raise AllocationInvalid(
                    "source_filter matches no counted records",
                    details={"source_filter": ["matches no counted records"]},
                )
            currencies = {s.currency for s in sources}
            currency = spec.get("currency") or (currencies.pop() if len(currencies) == 1 else None)
            if currency is None:
                raise AllocationInvalid(
                    "The sources are in several currencies; give currency",
                    details={"currency": ["required when sources mix currencies"]},
                )
            fx = FxTable(tenant_id)
            total = to_storage(
                sum(
                    (
                        exact_convert(s.cost_amount, fx.rate(s.currency, currency, s.timestamp))
                        for s in sources
                    ),
                    Decimal(0),
                )
            )
            kinds = {s.resource_type for s in sources}
            resource_type = spec.get("resource_type") or (
                kinds.pop() if len(kinds) == 1 else "allocated_cost"
            )
            services_seen = {s.service_name for s in sources}
            service_name = spec.get("service_name") or (
                services_seen.pop() if len(services_seen) == 1 else ""
            )
            default_ts = max(s.timestamp for s in sources)
        else:
            total = spec["cost_amount"]
            currency = spec.get("currency") or "USD"
            resource_type = spec["resource_type"]
            service_name = spec.get("service_name") or ""
            default_ts = now
        timestamp = spec.get("timestamp") or default_ts
        if timestamp > now + timedelta(minutes=5):
            raise AllocationInvalid(
                "timestamp must not be in the future", details={"timestamp": ["in the future"]}
            )

        rule = spec["rule"]
        if rule == "equal":
            weights = [Decimal(1)] * len(targets)
        elif rule == "weighted":
            weights = [Decimal(t["weight"]) for t in targets]
        else:
            usage_end = spec.get("usage_end") or (
                midnight(spec["amortize_to"]) if spec.get("amortize_to") else now
            )
            usage_start = spec.get("usage_start") or (
                midnight(spec["amortize_from"])
                if spec.get("amortize_from")
                else usage_end - timedelta(days=30)
            )
            weights = _usage_weights(
                tenant_id, targets, spec["usage_resource_type"], usage_start, usage_end
            )
        if not any(w > 0 for w in weights):
            raise AllocationInvalid(
                "No target has a positive weight"
                + (" (no usage in the period)" if rule == "usage_based" else ""),
                details={"targets": ["all weights are zero"]},
            )
        shares = allocate_money(total, weights, currency)

        allocation = CostAllocation.objects.create(
            allocation_id=allocation_id,
            tenant_id=tenant_id,
            rule=rule,
            total=total,
            currency=currency,
            resource_type=resource_type,
            service_name=service_name,
            source_filter=_jsonable(spec.get("source_filter")),
            source_record_count=len(sources),
            targets=[{**t, "weight": str(w)} for t, w in zip(targets, weights, strict=True)],
            shares=[str(s) for s in shares],
            amortize_from=spec.get("amortize_from"),
            amortize_to=spec.get("amortize_to"),
            receipt_id=receipt_id,
            created_at=now,
            created_by=created_by,
        )

        if sources:
            rows = [_model_row(s) for s in sources]
            CostRecord.objects.filter(pk__in=[s.pk for s in sources]).update(
                counted=False, allocation_id=allocation_id
            )
            apply_rollup_deltas(rollup_deltas(rows, sign=-1))
            for r in rows:
                budget_link.reverse_spending(
                    tenant_id=tenant_id,
                    original=_spending(r),
                    reversal_id=f"{allocation_id}:{r['record_id']}",
                    reservation_id=r["reservation_id"],
                    actor=actor,
                )

        part_rows: list[dict[str, Any]] = []
        if spec.get("amortize_from"):
            first, last = spec["amortize_from"], spec["amortize_to"]
            days = [first + timedelta(days=i) for i in range((last - first).days)]
            slices = []
            for index, (target, share) in enumerate(zip(targets, shares, strict=True)):
                for day, amount in zip(
                    days, allocate_money(share, [1] * len(days), currency), strict=True
                ):
                    slices.append(
                        AmortizationSlice(
                            allocation_id=allocation_id,
                            tenant_id=tenant_id,
                            day=day,
                            target_index=index,
                            attributed_to_type=target["attributed_to_type"],
                            attributed_to_id=target["attributed_to_id"],
                            amount=amount,
                        )
                    )
            AmortizationSlice.objects.bulk_create(slices, batch_size=1000)
        else:
            for target, share in zip(targets, shares, strict=True):
                part_rows.append(
                    _part_row(
                        tenant_id,
                        allocation,
                        target,
                        share,
                        timestamp,
                        now,
                        receipt_id,
                        created_by,
                    )
                )

        _emit_receipt(
            tenant_id=tenant_id,
            inputs={
                "operation": "allocate",
                "rule": rule,
                "cost_amount": spec.get("cost_amount"),
                "currency": currency,
                "source_record_count": len(sources),
                "targets": [
                    {
                        "attributed_to_type": t["attributed_to_type"],
                        "attributed_to_id": t["attributed_to_id"],
                        "weight": w,
                    }
                    for t, w in zip(targets, weights, strict=True)
                ],
                "amortize_from": spec.get("amortize_from"),
                "amortize_to": spec.get("amortize_to"),
            },
            result={
                "allocation_id": allocation_id,
                "total": total,
                "shares": shares,
                "record_ids": [r["record_id"] for r in part_rows],
                "source_record_ids": [s.pk for s in sources][:1000],
            },
            decision_status="pass",
            rationale=f"{rule} allocation over {len(targets)} targets",
            actor=actor,
            receipt_id=receipt_id,
            timestamp_utc=now,
        )
        _write_parts(tenant_id, part_rows, actor)
    if spec.get("amortize_from"):
        written = write_amortization_slices(now=now, allocation_id=allocation_id)
        return allocation, written
    return allocation, [r["record_id"] for r in part_rows]


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(
        json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )


def _part_row(
    tenant_id: str,
    allocation: Any,
    target: dict[str, Any],
    amount: Decimal,
    timestamp: datetime,
    now: datetime,
    receipt_id: uuid.UUID,
    created_by: str,
) -> dict[str, Any]:
    return record_row(
        tenant_id=tenant_id,
        kind=str(CostRecord.Kind.ALLOCATION),
        resource_type=allocation.resource_type,
        service_name=allocation.service_name,
        attributed_to_type=target["attributed_to_type"],
        attributed_to_id=target["attributed_to_id"],
        cost_amount=amount,
        currency=allocation.currency,
        timestamp=timestamp,
        recorded_at=now,
        receipt_id=receipt_id,
        allocation_id=allocation.allocation_id,
        created_by=created_by,
    )


def _write_parts(tenant_id: str, rows: list[dict[str, Any]], actor: dict[str, Any]) -> None:
    insert_records(rows)
    apply_rollup_deltas(rollup_deltas(rows))
    budget_link.apply_spending(tenant_id=tenant_id, items=[_spending(r) for r in rows], actor=actor)


def write_amortization_slices(
    *, now: datetime | None = None, allocation_id: uuid.UUID | None = None, limit: int = 5000
) -> list[uuid.UUID]:
    """Write every amortization slice whose day has come (day <= today, UTC) and that is not
    written yet, as a cost record dated that day at 00:00Z. Safe to run twice or late: a
    slice is claimed under a row lock (skip locked) and marked in the same transaction."""
    from costs.models import AmortizationSlice, CostAllocation
    from receipts.services import system_actor

    now = now or clock.now()
    today = now.astimezone(UTC).date()
    actor = system_actor("costs.write_amortization_slices")
    written: list[uuid.UUID] = []
    with transaction.atomic():
        due = AmortizationSlice.objects.filter(record_id__isnull=True, day__lte=today)
        if allocation_id is not None:
            due = due.filter(allocation_id=allocation_id)
        slices = list(
            due.select_for_update(skip_locked=True).order_by(
                "allocation_id", "day", "target_index"
            )[:limit]
        )
        if not slices:
            return written
        allocations = {
            a.allocation_id: a
            for a in CostAllocation.objects.filter(
                allocation_id__in={s.allocation_id for s in slices}
            )
        }
        by_tenant: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        for piece in slices:
            allocation = allocations[piece.allocation_id]
            row = _part_row(
                piece.tenant_id,
                allocation,
                {
                    "attributed_to_type": piece.attributed_to_type,
                    "attributed_to_id": piece.attributed_to_id,
                },
                piece.amount,
                midnight(piece.day),
                now,
                uuid.uuid4(),
                actor["principal"],
            )
            by_tenant.setdefault(piece.tenant_id, []).append((piece, row))
        for tenant_id, pairs in by_tenant.items():
            receipt_id = uuid.uuid4()
            rows = []
            for piece, row in pairs:
                row["receipt_id"] = receipt_id
                piece.record_id = row["record_id"]
                piece.written_at = now
                rows.append(row)
            _emit_receipt(
                tenant_id=tenant_id,
                inputs={"operation": "amortization_slices", "count": len(rows)},
                result={
                    "items": [
                        {
                            "allocation_id": p.allocation_id,
                            "day": p.day,
                            "id": r["record_id"],
                            "amount": r["cost_amount"],
                        }
                        for p, r in pairs
                    ]
                },
                decision_status="pass",
                rationale="amortized cost written for its day",
                actor=actor,
                receipt_id=receipt_id,
                timestamp_utc=now,
            )
            _write_parts(tenant_id, rows, actor)
            written.extend(r["record_id"] for r in rows)
        AmortizationSlice.objects.bulk_update(slices, ["record_id", "written_at"])
    return written


# --- Anomalies ------------------------------------------------------------------------------

BASELINE_DAYS = 30
SEVERITY_BANDS = (
    (Decimal("0.50"), "critical"),
    (Decimal("0.25"), "warning"),
    (Decimal("0.10"), "info"),
)
#: anomaly dimension → (group_by of the series, the equality filter it needs)
ANOMALY_DIMENSIONS: dict[str, tuple[list[str], dict[str, str]]] = {
    "tenant": ([], {}),
    "project": (["attributed_to_id"], {"attributed_to_type": "project"}),
    "feature": (["attributed_to_id"], {"attributed_to_type": "feature"}),
    "service": (["service_name"], {}),
    "region": (["region"], {}),
}


def severity_for(deviation: Decimal) -> str | None:
    size = abs(deviation)
    for bound, name in SEVERITY_BANDS:
        if size > bound:
            return name
    return None


def expected_cost(history: Sequence[Decimal], weekday_history: Sequence[Decimal]) -> Decimal:
    """The 30-day mean x (the same weekday's mean in those days / the 30-day mean)."""
    from decimal import localcontext

    from budgeting_site.platform.money import WIDE_PRECISION

    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        mean = sum(history, Decimal(0)) / len(history)
        if mean == 0 or not weekday_history:
            return Decimal(0)
        weekday_mean = sum(weekday_history, Decimal(0)) / len(weekday_history)
        return mean * (weekday_mean / mean)


def daily_series(
    tenant_id: str, dimension: str, first_day: date, last_day: date, currency: str
) -> dict[str, dict[date, Decimal]]:
    """Cost per day (exact, in `currency`) of each member of a dimension, days inclusive."""
    from costs.reporting import CostQuery, aggregate

    group_by, filters = ANOMALY_DIMENSIONS[dimension]
    query = CostQuery(
        tenant_id=tenant_id,
        currency=currency,
        start=midnight(first_day),
        end=midnight(last_day + timedelta(days=1)),
        filters=dict(filters),
        group_by=[*group_by, "day"],
    )
    series: dict[str, dict[date, Decimal]] = {}
    for key, (cost, _usage, _count) in aggregate(query).groups.items():
        member = tenant_id if dimension == "tenant" else key[0]
        if member in (None, ""):
            continue
        series.setdefault(member, {})[date.fromisoformat(key[-1])] = cost
    return series


def detect_anomalies(
    *,
    now: datetime | None = None,
    days: Sequence[date] | None = None,
    tenant_id: str | None = None,
) -> int:
    """Judge whole UTC days against their weekday-adjusted 30-day baseline (SPEC 4.4).

    By default the last three completed days, oldest first, so a late or missed run catches
    up; re-running a day updates its rows and never alerts twice. Returns the anomalies
    stored or updated.
    """
    from django.conf import settings

    now = now or clock.now()
    yesterday = now.astimezone(UTC).date() - timedelta(days=1)
    days = sorted(days) if days else [yesterday - timedelta(days=i) for i in (2, 1, 0)]
    tenants = (
        [tenant_id]
        if tenant_id
        else sorted(
            set(
                CostDailyRollup.objects.filter(
                    day__gte=days[0] - timedelta(days=BASELINE_DAYS), day__lte=days[-1]
                )
                .values_list("tenant_id", flat=True)
                .distinct()
            )
        )
    )
    needed = int(settings.ANOMALY_CONSECUTIVE_DAYS)
    min_impact = Decimal(str(settings.ANOMALY_MIN_IMPACT))
    stored = 0
    for tenant in tenants:
        try:
            stored += _detect_for_tenant(tenant, days, now, needed, min_impact)
        except DomainError:
            logger.exception("costs.anomaly_detection_failed", extra={"tenant_id": tenant})
    return stored


def _detect_for_tenant(
    tenant_id: str, days: Sequence[date], now: datetime, needed: int, min_impact: Decimal
) -> int:
    from costs.models import CostAnomaly

    currency = budget_link.default_currency(tenant_id)
    first = days[0] - timedelta(days=BASELINE_DAYS)
    stored = 0
    for dimension in ANOMALY_DIMENSIONS:
        series = daily_series(tenant_id, dimension, first, days[-1], currency)
        for member, by_day in sorted(series.items()):
            for day in days:
                window = [day - timedelta(days=i) for i in range(1, BASELINE_DAYS + 1)]
                history = [by_day.get(d, Decimal(0)) for d in window]
                same_weekday = [
                    by_day.get(d, Decimal(0)) for d in window if d.weekday() == day.weekday()
                ]
                expected = expected_cost(history, same_weekday)
                if expected <= 0:
                    continue
                observed = by_day.get(day, Decimal(0))
                deviation = (observed - expected) / expected
                severity = severity_for(deviation)
                if severity is None:
                    continue
                with transaction.atomic():
                    previous = CostAnomaly.objects.filter(
                        tenant_id=tenant_id,
                        dimension_type=dimension,
                        dimension_id=member,
                        day=day - timedelta(days=1),
                    ).first()
                    streak = (previous.consecutive_days + 1) if previous else 1
                    values = {
                        "currency": currency,
                        "expected_cost": to_storage(expected),
                        "observed_cost": to_storage(observed),
                        "deviation_percentage": (deviation * 100).quantize(Decimal("0.0001")),
                        "severity": severity,
                        "consecutive_days": streak,
                    }
                    anomaly, _ = CostAnomaly.objects.update_or_create(
                        tenant_id=tenant_id,
                        dimension_type=dimension,
                        dimension_id=member,
                        day=day,
                        defaults=values,
                        create_defaults={**values, "detected_at": now},
                    )
                    stored += 1
                    if streak >= needed and abs(observed - expected) > min_impact:
                        _alert_once(anomaly, streak, dimension, member)
    return stored


def _alert_once(anomaly: Any, streak: int, dimension: str, member: str) -> None:
    """One alert and one event per anomalous streak, on the first day that qualifies; later
    days of the streak count occurrences on that alert. A re-run of a day does nothing."""
    from costs.models import CostAnomaly
    from events.services import publish_event, raise_alert

    streak_start = anomaly.day - timedelta(days=streak - 1)
    rows = list(
        CostAnomaly.objects.select_for_update()
        .filter(
            tenant_id=anomaly.tenant_id,
            dimension_type=dimension,
            dimension_id=member,
            day__gte=streak_start,
            day__lte=anomaly.day,
        )
        .order_by("day")
    )
    if any(r.alerted for r in rows if r.pk == anomaly.pk):
        return
    first_of_streak = not any(r.alerted for r in rows)
    dimension_label = f"{dimension}:{member}"
    raise_alert(
        tenant_id=anomaly.tenant_id,
        alert_type="cost_anomaly_detected",
        severity=anomaly.severity,
        title=f"Cost anomaly on {dimension_label}: {anomaly.deviation_percentage}%",
        message=(
            f"{streak} consecutive anomalous days up to {anomaly.day}; observed "
            f"{anomaly.observed_cost} against an expected {anomaly.expected_cost} "
            f"{anomaly.currency}"
        ),
        resource_id=dimension_label[:128],
        dedup_key=f"streak:{streak_start.isoformat()}",
        details={
            "anomaly_id": str(anomaly.anomaly_id),
            "dimension": dimension_label,
            "expected_cost": str(anomaly.expected_cost),
            "observed_cost": str(anomaly.observed_cost),
            "deviation_percentage": str(anomaly.deviation_percentage),
            "time_period": anomaly.day.isoformat(),
            "consecutive_days": streak,
        },
    )
    if first_of_streak:
        publish_event(
            tenant_id=anomaly.tenant_id,
            event_type="cost_anomaly_detected",
            payload={
                "anomaly_id": anomaly.anomaly_id,
                "dimension": dimension_label,
                "dimension_type": dimension,
                "dimension_id": member,
                "expected_cost": anomaly.expected_cost,
                "observed_cost": anomaly.observed_cost,
                "severity": anomaly.severity,
                "deviation_percentage": anomaly.deviation_percentage,
                "time_period": anomaly.day.isoformat(),
                "currency": anomaly.currency,
            },
        )
    CostAnomaly.objects.filter(pk=anomaly.pk).update(alerted=True)
