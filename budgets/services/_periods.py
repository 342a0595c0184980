"""Period rows: found or created (idempotently) for the budgets a change touches."""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q

from budgets.models import Budget, BudgetPeriod
from budgets.periods import Period, period_at


def period_of(budget: Budget, at: datetime) -> Period | None:
    return period_at(budget.period_type, budget.start_date, budget.end_date, at)


def ensure_period_rows(
    pairs: Iterable[tuple[Budget, Period]],
) -> dict[tuple[object, datetime], BudgetPeriod]:
    """The row of each (budget, period), created when missing. Creation is INSERT ... ON
    CONFLICT DO NOTHING, so concurrent callers end up with the same row."""
    wanted = {(b.pk, p.start): (b, p) for b, p in pairs}
    if not wanted:
        return {}
    return _complete(wanted, _fetch(wanted), create=True, reselect=lambda: _fetch(wanted))


def _fetch(
    wanted: dict[tuple[object, datetime], tuple[Budget, Period]],
) -> dict[tuple[object, datetime], BudgetPeriod]:
    budget_ids = {key[0] for key in wanted}
    starts = {key[1] for key in wanted}
    rows = BudgetPeriod.objects.filter(budget_id__in=budget_ids, period_start__in=starts)
    result = {}
    for row in rows:
        key = (row.budget_id, row.period_start)
        if key in wanted:
            result[key] = row
    return result


Rows = dict[tuple[object, datetime], BudgetPeriod]


def rows_for_keys(
    pairs: Iterable[tuple[Budget, Period]], *, lock: bool, create: bool
) -> dict[tuple[object, datetime], BudgetPeriod]:
    """The rows of (budget, period) pairs, inside the caller's transaction.

    lock: SELECT ... FOR UPDATE in id order. create: missing rows are inserted first (INSERT
    ... ON CONFLICT DO NOTHING) and the select runs again. Without create, a missing row is
    an unsaved row with zeros (a dry run writes nothing)."""
    wanted = {(b.pk, p.start): (b, p) for b, p in pairs}
    if not wanted:
        return {}
    return _complete(
        wanted, _select(wanted, lock), create=create, reselect=lambda: _select(wanted, lock)
    )


def _complete(
    wanted: dict[tuple[object, datetime], tuple[Budget, Period]],
    found: Rows,
    *,
    create: bool,
    reselect: Callable[[], Rows],
) -> Rows:
    """`found` with the rows of `wanted` it lacks: with create, inserted (INSERT ... ON
    CONFLICT DO NOTHING, so concurrent callers end up with the same row) and read again by
    `reselect`; without, unsaved rows with zeros."""
    missing = [key for key in wanted if key not in found]
    if not missing:
        return found
    if create:
        BudgetPeriod.objects.bulk_create(
            [_new_row(*wanted[key]) for key in missing], ignore_conflicts=True
        )
        return reselect()
    for key in missing:
        found[key] = _new_row(*wanted[key])
    return found


def _new_row(budget: Budget, period: Period) -> BudgetPeriod:
    return BudgetPeriod(
        tenant_id=budget.tenant_id,
        budget=budget,
        period_start=period.start,
        period_end=period.end,
        budget_amount=budget.budget_amount,
    )


def _select(
    wanted: dict[tuple[object, datetime], tuple[Budget, Period]], lock: bool
) -> dict[tuple[object, datetime], BudgetPeriod]:
    match = Q()
    for budget_id, start in wanted:
        match |= Q(budget_id=budget_id, period_start=start)
    rows = BudgetPeriod.objects.filter(match)
    if lock:
        from budgets.services._db import with_lock_timeout

        rows = with_lock_timeout(rows).select_for_update().order_by("pk")
    return {(row.budget_id, row.period_start): row for row in rows}


_COLUMNS = [f.column for f in BudgetPeriod._meta.concrete_fields]


def rows_with_fingerprint(
    pairs: Iterable[tuple[Budget, Period]],
    fingerprint: tuple[str, list[object]],
    expected: str,
    *,
    lock: bool,
    create: bool,
) -> Rows:
    """`rows_for_keys` on PostgreSQL for definitions read with the fingerprint `expected`: the
    statement that reads (and locks) the rows also computes the fingerprint (the scalar
    subquery of `_applicable.fingerprint_sql`), one precompiled statement with no ORM query
    building on the hot path. A different fingerprint raises `DefinitionsChanged` before any
    row is created."""
    from budgets.services._applicable import DefinitionsChanged

    wanted = {(b.pk, p.start): (b, p) for b, p in pairs}
    found: Rows = {}
    seen = _UNREAD
    if wanted:
        found, seen = _select_raw(wanted, lock, fingerprint)
    if seen is _UNREAD:
        # No row read (a new period, or nothing to read): ask for the fingerprint alone.
        fp_sql, fp_params = fingerprint
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {fp_sql}", fp_params)
            seen = cursor.fetchone()[0]
    if seen != expected:
        raise DefinitionsChanged()
    return _complete(
        wanted,
        found,
        create=create,
        reselect=lambda: _select_raw(wanted, lock, fingerprint)[0],
    )


_UNREAD: Any = object()


def _select_raw(
    wanted: dict[tuple[object, datetime], tuple[Budget, Period]],
    lock: bool,
    fingerprint: tuple[str, list[object]],
) -> tuple[Rows, str | None]:
    """The rows of `wanted` and the fingerprint, in one statement. Locking: FOR UPDATE OF the
    period rows only, in id order, with `lock_timeout` set inside the statement (see
    `_db.with_lock_timeout`): the sort below the lock evaluates the filter of every row
    before the first row lock is requested."""
    from budgets.services._db import lock_timeout_ms

    fp_sql, fp_params = fingerprint
    table = BudgetPeriod._meta.db_table
    keys = ", ".join(["(%s::uuid, %s::timestamptz)"] * len(wanted))
    params: list[Any] = list(fp_params)
    for budget_id, start in wanted:
        params += [budget_id, start]
    columns = ", ".join(f"p.{c}" for c in _COLUMNS)
    sql = (
        f"SELECT {columns}, {fp_sql} FROM {table} AS p "  # noqa: S608
        f"WHERE (p.budget_id, p.period_start) IN ({keys})"
    )
    if lock:
        sql += " AND set_config('lock_timeout', %s, true) IS NOT NULL ORDER BY p.id FOR UPDATE OF p"
        params.append(f"{lock_timeout_ms()}ms")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = len(_COLUMNS)
    found: Rows = {}
    for values in rows:
        row = BudgetPeriod.from_db(connection.alias, None, values[:width])
        found[(row.budget_id, row.period_start)] = row
    return found, (rows[0][width] if rows else _UNREAD)
