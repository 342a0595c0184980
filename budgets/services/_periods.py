"""Period rows: found or created (idempotently) for the budgets a change touches."""

from collections.abc import Iterable
from datetime import datetime

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
    found = _fetch(wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        BudgetPeriod.objects.bulk_create(
            [
                BudgetPeriod(
                    tenant_id=wanted[key][0].tenant_id,
                    budget=wanted[key][0],
                    period_start=wanted[key][1].start,
                    period_end=wanted[key][1].end,
                    budget_amount=wanted[key][0].budget_amount,
                )
                for key in missing
            ],
            ignore_conflicts=True,
        )
        found = _fetch(wanted)
    return found


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
    found = _select(wanted, lock)
    missing = [key for key in wanted if key not in found]
    if missing and create:
        BudgetPeriod.objects.bulk_create(
            [
                BudgetPeriod(
                    tenant_id=wanted[key][0].tenant_id,
                    budget=wanted[key][0],
                    period_start=wanted[key][1].start,
                    period_end=wanted[key][1].end,
                    budget_amount=wanted[key][0].budget_amount,
                )
                for key in missing
            ],
            ignore_conflicts=True,
        )
        found = _select(wanted, lock)
    elif missing:
        for key in missing:
            budget, period = wanted[key]
            found[key] = BudgetPeriod(
                tenant_id=budget.tenant_id,
                budget=budget,
                period_start=period.start,
                period_end=period.end,
                budget_amount=budget.budget_amount,
            )
    return found


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
