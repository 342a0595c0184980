"""The database side of the promise: transactions with a bounded retry, period rows locked in
id order, and counter updates guarded in SQL.

PostgreSQL (READ COMMITTED): every writer of a period row takes `SELECT ... FOR UPDATE ORDER
BY id` on the rows it will change, so writers queue instead of racing and never deadlock each
other; the update itself is relative and, for a hold on a hard_stop budget, conditional
(`AND spent + reserved + x <= budget_amount`): a row count of 0 means the guard caught
something the lock should have prevented, and the transaction is rolled back and retried.

SQLite: transactions begin IMMEDIATE (settings), so one writer runs at a time and the values
read inside the transaction are the values written over; the new values are written as
absolutes computed exactly in Decimal (SQLite would do `spent + x` in floating point).
"""

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, Model, QuerySet
from django.db.models.expressions import RawSQL

from budgets.exceptions import BudgetBusy
from budgets.models import BudgetPeriod

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Contention is retried for this long, then answered 503 retriable (SPEC 2.3).
RETRY_SECONDS = 2.0
#: 40001 serialization failure, 40P01 deadlock, 55P03 lock_timeout.
RETRIABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


class Retry(Exception):
    """Raised inside a transaction to roll it back and run it again (a guard caught a race,
    an approval was consumed by a concurrent check)."""


def _is_retriable(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(
        getattr(cause, "diag", None), "sqlstate", None
    )
    if sqlstate in RETRIABLE_SQLSTATES:
        return True
    return connection.vendor == "sqlite" and "locked" in str(exc).lower()


_deadline = threading.local()


def lock_timeout_ms() -> int:
    """What is left of the current `atomic_with_retry` budget, for `lock_timeout`."""
    deadline = getattr(_deadline, "at", None)
    if deadline is None:
        return int(RETRY_SECONDS * 1000)
    return max(int((deadline - time.monotonic()) * 1000), 50)


def with_lock_timeout(rows: QuerySet[Any]) -> QuerySet[Any]:
    """Set the transaction's `lock_timeout` inside the locking SELECT itself (one round trip
    less than a separate SET LOCAL): the volatile `set_config` is evaluated while the rows are
    scanned, before the first row lock is requested."""
    if connection.vendor != "postgresql":
        return rows
    setting = RawSQL(
        "set_config('lock_timeout', %s, true) IS NOT NULL",
        [f"{lock_timeout_ms()}ms"],
        output_field=BooleanField(),
    )
    return rows.alias(_lock_timeout_set=setting).filter(_lock_timeout_set=True)


def atomic_with_retry(fn: Callable[[], T], *, seconds: float = RETRY_SECONDS) -> T:
    """Run `fn` in a transaction; on a serialization failure, deadlock, lock timeout or a
    `Retry`, roll back and run it again until `seconds` have passed, then raise BudgetBusy.
    Row locks taken through `lock_periods`/`with_lock_timeout` wait at most the time left."""
    started = time.monotonic()
    outer = getattr(_deadline, "at", None)
    _deadline.at = started + seconds if outer is None else min(outer, started + seconds)
    try:
        return _retry_loop(fn, started, seconds)
    finally:
        _deadline.at = outer


def _retry_loop(fn: Callable[[], T], started: float, seconds: float) -> T:
    attempt = 0
    while True:
        try:
            with transaction.atomic():
                return fn()
        except Retry:
            pass
        except DatabaseError as exc:
            if not _is_retriable(exc):
                raise
        attempt += 1
        if time.monotonic() - started >= seconds:
            logger.warning("budget.contention_timeout", extra={"attempts": attempt})
            raise BudgetBusy(retriable=True, details={"attempts": attempt})
        # Jittered backoff so retrying writers do not meet again in lockstep.
        time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.05)))


def lock_periods(period_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, BudgetPeriod]:
    """Lock the rows in id order (the one order every writer uses) and return them fresh."""
    ids = sorted(set(period_ids))
    if not ids:
        return {}
    rows = with_lock_timeout(BudgetPeriod.objects.filter(pk__in=ids))
    return {row.pk: row for row in rows.select_for_update().order_by("pk")}


@dataclass
class CounterChange:
    """A change to one locked period row: deltas plus the new signal bits."""

    period: BudgetPeriod
    spent_delta: Decimal = Decimal(0)
    reserved_delta: Decimal = Decimal(0)
    signal_bits: int = 0
    #: For a hold on a hard_stop budget: the UPDATE admits it only within the amount.
    guard: bool = False

    @property
    def new_spent(self) -> Decimal:
        return self.period.spent_amount + self.spent_delta

    @property
    def new_reserved(self) -> Decimal:
        return self.period.reserved_amount + self.reserved_delta


def _pending(changes: Iterable[CounterChange]) -> list[CounterChange]:
    """The changes that change something, in row id order."""
    return [
        c
        for c in sorted(changes, key=lambda c: c.period.pk)
        if c.spent_delta != 0 or c.reserved_delta != 0 or c.signal_bits & ~c.period.signals
    ]


def _update_sql(todo: list[CounterChange]) -> tuple[str, list[object]]:
    params: list[object] = []
    values = ", ".join(
        f"(%s::uuid, %s::numeric, %s::numeric, %s::integer, {_LITERALS[c.guard]})" for c in todo
    )
    for c in todo:
        params += [c.period.pk, c.spent_delta, c.reserved_delta, c.signal_bits]
    table = BudgetPeriod._meta.db_table
    sql = (
        f"UPDATE {table} AS p SET spent_amount = p.spent_amount + v.ds, "  # noqa: S608
        "reserved_amount = p.reserved_amount + v.dr, signals = p.signals | v.sig "
        f"FROM (VALUES {values}) AS v(id, ds, dr, sig, guard) "
        "WHERE p.id = v.id AND (NOT v.guard "
        "OR p.spent_amount + p.reserved_amount + v.ds + v.dr <= p.budget_amount)"
    )
    return sql, params


#: Values written into the text as they are: a fixed set of spellings, so a statement has few
#: texts. psycopg converts a statement of at most 50 parameters once and keeps it; one of more
#: is converted again (a regular expression over the whole text) on every execution.
_LITERALS = {None: "NULL", True: "true", False: "false"}


def _placeholder(value: object, params: list[object]) -> str:
    if value is None or value is True or value is False:
        return _LITERALS[value]
    params.append(value)
    return "%s"


def _applied(todo: list[CounterChange]) -> None:
    """The in-memory rows follow what was written."""
    for c in todo:
        row = c.period
        row.spent_amount = c.new_spent
        row.reserved_amount = c.new_reserved
        row.signals = row.signals | c.signal_bits


def apply_counter_changes(changes: Iterable[CounterChange]) -> None:
    """Write the changes to rows this transaction has locked and update the in-memory rows.

    PostgreSQL: one UPDATE ... FROM (VALUES ...) for all rows, relative, with the guard
    `spent + reserved + x <= budget_amount` on the rows that carry one; the row count must be
    the number of rows, or `Retry`. SQLite: absolute values per row (see the module doc).
    """
    from budgets.selectors import clear_throttle_cache

    todo = _pending(changes)
    if not todo:
        return
    if connection.vendor == "postgresql":
        sql, params = _update_sql(todo)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            updated = cursor.rowcount
        if updated != len(todo):
            logger.error("budget.guard_refused", extra={"rows": len(todo), "updated": updated})
            raise Retry()
    else:
        for c in todo:
            BudgetPeriod.objects.filter(pk=c.period.pk).update(
                spent_amount=c.new_spent,
                reserved_amount=c.new_reserved,
                signals=c.period.signals | c.signal_bits,
            )
    _applied(todo)
    # The throttle factor this process caches follows utilization at once.
    transaction.on_commit(clear_throttle_cache)


def _insert_sql(objects: list[Model], params: list[object]) -> str:
    """INSERT of unsaved rows of one model, every column as it is (no JSON columns); NULL,
    true and false are written as literals (`_placeholder`)."""
    meta = objects[0]._meta
    fields = meta.concrete_fields
    rows = ", ".join(
        "(" + ", ".join(_placeholder(getattr(obj, f.attname), params) for f in fields) + ")"
        for obj in objects
    )
    columns = ", ".join(f.column for f in fields)
    return f"INSERT INTO {meta.db_table} ({columns}) VALUES {rows}"  # noqa: S608


def _insert_ctes(groups: list[list[Model]], params: list[object]) -> list[str]:
    """Data-modifying CTEs inserting each non-empty group of rows (the foreign keys are
    checked at the end of the statement)."""
    return [f"i{n} AS ({_insert_sql(rows, params)})" for n, rows in enumerate(groups) if rows]


def hold(
    changes: Iterable[CounterChange],
    reservations: list[Any],
    lines: list[Any],
    *,
    fingerprint: tuple[str, list[object]] | None = None,
    also: Sequence[Model] = (),
) -> str | None:
    """A check's whole write: the counter changes (`apply_counter_changes`), the reservations
    with their hold lines, and the unsaved rows of `also` (of one model: the check's signed
    receipt), inserted as they are. On PostgreSQL one statement: the guarded relative UPDATE
    and the INSERTs as data-modifying CTEs, answering how many rows the UPDATE changed;
    anything but all of them is `Retry` (the INSERTs roll back with it).

    `fingerprint` (PostgreSQL): the scalar subquery of `_applicable.fingerprint_sql`, evaluated
    by this statement too. Its snapshot is taken after this transaction holds its row locks, so
    it sees every budget change committed before: the caller compares it with the definitions
    it decided with. Returns it (None without `fingerprint`)."""
    if connection.vendor != "postgresql" or not reservations:
        apply_counter_changes(changes)
        for rows in (reservations, lines):
            if rows:
                type(rows[0]).objects.bulk_create(rows)
        for row in also:
            row.save(force_insert=True)
        return None
    from budgets.selectors import clear_throttle_cache

    todo = _pending(changes)
    params: list[object] = []
    ctes = []
    if todo:
        update_sql, update_params = _update_sql(todo)
        ctes.append(f"u AS ({update_sql} RETURNING p.id)")
        params += update_params
    ctes += _insert_ctes([reservations, lines, list(also)], params)
    answer = "(SELECT count(*) FROM u)" if todo else "0"
    if fingerprint is not None:
        answer += f", {fingerprint[0]}"
        params += fingerprint[1]
    else:
        answer += ", NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT {answer}", params)
        updated, seen = cursor.fetchone()
    if updated != len(todo):
        logger.error("budget.guard_refused", extra={"rows": len(todo), "updated": updated})
        raise Retry()
    if todo:
        _applied(todo)
        transaction.on_commit(clear_throttle_cache)
    return seen
