"""Spending recorded without a hold (SPEC 2.4): a cost record adds to every budget it matches
by its attribution and its operation_context; a reversal takes it back out.

Recorded costs are always accepted and may take spending past a budget's amount; only the
"never negative" CHECK stands behind these writes.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from budgeting_site.platform import clock
from budgets import fx, selectors
from budgets.exceptions import ReservationNotFound
from budgets.models import Budget, HoldLine, Reservation, SpendEntry, SpendKind
from budgets.services._db import CounterChange, apply_counter_changes, atomic_with_retry
from budgets.services._db import lock_periods as _lock_periods
from budgets.services._periods import ensure_period_rows, period_of
from budgets.services.signals import crossings_for, emit_crossings

logger = logging.getLogger(__name__)


def _targets(
    attributed_to_type: str, attributed_to_id: str, operation_context: dict[str, Any] | None
) -> set[tuple[str, str]]:
    from budgets.services.check import CONTEXT_TARGETS

    pairs: set[tuple[str, str]] = set()
    if attributed_to_type and attributed_to_id:
        pairs.add((attributed_to_type, str(attributed_to_id)))
    for key, kind in CONTEXT_TARGETS:
        value = (operation_context or {}).get(key)
        if value not in (None, ""):
            pairs.add((kind, str(value)))
    return pairs


def _matching(
    tenant_id: str,
    at: datetime,
    targets: set[tuple[str, str]],
    pool: list[Budget] | None = None,
) -> list[Budget]:
    if pool is None:
        budgets = selectors.applicable_budgets(tenant_id=tenant_id, at=at, targets=targets)
    else:
        budgets = [
            b for b in pool if b.start_date <= at and (b.end_date is None or at < b.end_date)
        ]
    return [
        b
        for b in budgets
        if b.allocated_to_type == "tenant" or (b.allocated_to_type, b.allocated_to_id) in targets
    ]


def _apply(
    *,
    tenant_id: str,
    postings: list[tuple[Budget, Decimal, datetime, str, str]],
) -> list[uuid.UUID]:
    """postings: (budget, amount in the budget's currency, at, record_id, kind)."""
    if not postings:
        return []
    pairs = []
    for budget, _, at, _, _ in postings:
        period = period_of(budget, at)
        if period is not None:
            pairs.append((budget, period))
    rows_by_key = ensure_period_rows(pairs)
    now = clock.now()

    def run() -> list[uuid.UUID]:
        wanted = []
        for budget, amount, at, record_id, kind in postings:
            period = period_of(budget, at)
            if period is None:
                continue
            wanted.append(
                (budget, rows_by_key[(budget.pk, period.start)].pk, amount, at, record_id, kind)
            )
        rows = _lock_periods(pk for _, pk, *_ in wanted)
        seen = set()
        records = [(b.pk, r, k) for b, _, _, _, r, k in wanted if r]
        if records:
            existing = SpendEntry.objects.filter(
                budget_id__in={b for b, _, _ in records},
                record_id__in={r for _, r, _ in records},
            ).values_list("budget_id", "record_id", "kind")
            seen = set(existing)
        changes: dict[Any, CounterChange] = {}
        budgets: dict[Any, Budget] = {}
        entries = []
        touched: list[uuid.UUID] = []
        for budget, period_pk, amount, at, record_id, kind in wanted:
            key = (budget.pk, record_id, kind)
            if record_id and key in seen:
                continue  # applied before: a record counts once per budget
            seen.add(key)
            row = rows[period_pk]
            budgets[row.pk] = budget
            change = changes.setdefault(row.pk, CounterChange(period=row))
            # Spending never goes below zero: a reversal of spending that predates the
            # budget takes out only what is there.
            delta = max(amount, -(row.spent_amount + change.spent_delta))
            change.spent_delta += delta
            entries.append(
                SpendEntry(
                    tenant_id=tenant_id,
                    budget=budget,
                    period=row,
                    amount=delta,
                    kind=kind,
                    at=at,
                    record_id=record_id,
                    created_at=now,
                )
            )
            touched.append(budget.pk)
        crossings = []
        for pk, change in changes.items():
            crossings.extend(crossings_for(budgets[pk], change))
        apply_counter_changes(changes.values())
        SpendEntry.objects.bulk_create(entries)
        emit_crossings(crossings, at=now)
        return touched

    return atomic_with_retry(run)


def _postings_for(
    *,
    tenant_id: str,
    amount: Decimal,
    currency: str,
    attributed_to_type: str,
    attributed_to_id: str,
    operation_context: dict[str, Any] | None,
    at: datetime,
    record_id: str,
    kind: str,
    reservation_id: uuid.UUID | None = None,
    pool: list[Budget] | None = None,
) -> list[tuple[Budget, Decimal, datetime, str, str]]:
    if reservation_id is not None:
        if not Reservation.objects.filter(pk=reservation_id, tenant_id=tenant_id).exists():
            raise ReservationNotFound()
        budgets = [
            line.budget
            for line in HoldLine.objects.filter(reservation_id=reservation_id).select_related(
                "budget"
            )
            if line.budget.deleted_at is None
        ]
    else:
        targets = _targets(attributed_to_type, attributed_to_id, operation_context)
        budgets = _matching(tenant_id, at, targets, pool)
    return [
        (b, fx.convert(amount, currency, b.currency, at, tenant_id=tenant_id), at, record_id, kind)
        for b in budgets
    ]


def apply_spending(
    *,
    tenant_id: str,
    amount: Decimal,
    currency: str,
    attributed_to_type: str = "",
    attributed_to_id: str = "",
    operation_context: dict[str, Any] | None = None,
    record_id: Any = "",
    at: datetime | None = None,
    timestamp: datetime | None = None,
    actor: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Add `amount` (in `currency`; negative takes spending back out) to every budget that the
    attribution or the context matches, in the period containing `at` (alias `timestamp`).
    Idempotent per (budget, record_id). Returns the ids of the budgets changed."""
    when = at or timestamp or clock.now()
    record = str(record_id or "")[:128]
    kind = SpendKind.COST_RECORD if amount >= 0 else SpendKind.REVERSAL
    postings = _postings_for(
        tenant_id=tenant_id,
        amount=amount,
        currency=currency,
        attributed_to_type=attributed_to_type,
        attributed_to_id=attributed_to_id,
        operation_context=operation_context,
        at=when,
        record_id=record,
        kind=kind,
    )
    return _apply(tenant_id=tenant_id, postings=postings)


def reverse_spending(
    *,
    tenant_id: str,
    amount: Decimal,
    currency: str,
    attributed_to_type: str = "",
    attributed_to_id: str = "",
    operation_context: dict[str, Any] | None = None,
    record_id: Any = "",
    at: datetime | None = None,
    timestamp: datetime | None = None,
    reservation_id: uuid.UUID | None = None,
    actor: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Take `abs(amount)` back out of the budgets the original record counted toward: give the
    original's attribution, context and timestamp (or the `reservation_id` it settled);
    `record_id` is the reversal's own id (idempotency)."""
    when = at or timestamp or clock.now()
    postings = _postings_for(
        tenant_id=tenant_id,
        amount=-abs(amount),
        currency=currency,
        attributed_to_type=attributed_to_type,
        attributed_to_id=attributed_to_id,
        operation_context=operation_context,
        at=when,
        record_id=str(record_id or "")[:128],
        kind=SpendKind.REVERSAL,
        reservation_id=reservation_id,
    )
    return _apply(tenant_id=tenant_id, postings=postings)


def apply_spending_bulk(
    *, tenant_id: str, items: Sequence[Any], actor: dict[str, Any] | None = None
) -> list[uuid.UUID]:
    """Many records in one transaction. Each item has `record_id`, `amount`, `currency`,
    `timestamp`, `attributed_to_type`, `attributed_to_id`, `operation_context` (the costs
    app's `Spending`)."""
    postings: list[tuple[Budget, Decimal, datetime, str, str]] = []
    # One read of the tenant's budgets for the whole batch.
    pool = list(Budget.objects.filter(tenant_id=tenant_id, deleted_at__isnull=True))
    for item in items:
        amount = Decimal(item.amount)
        postings.extend(
            _postings_for(
                tenant_id=tenant_id,
                amount=amount,
                currency=item.currency,
                attributed_to_type=item.attributed_to_type,
                attributed_to_id=item.attributed_to_id,
                operation_context=item.operation_context,
                at=item.timestamp,
                record_id=str(item.record_id or "")[:128],
                kind=SpendKind.COST_RECORD if amount >= 0 else SpendKind.REVERSAL,
                pool=pool,
            )
        )
    return _apply(tenant_id=tenant_id, postings=postings)
