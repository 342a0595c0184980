"""The scheduled jobs' services: forecasts (SPEC 2.6) and reconciliation (SPEC 4.5)."""

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum

from budgeting_site.platform import clock
from budgeting_site.platform.metrics import RECONCILIATION_DRIFT
from budgets import selectors
from budgets.models import FORECAST_BIT, Budget, BudgetPeriod, HoldLine, SpendEntry
from budgets.services._db import lock_periods
from budgets.services.signals import emit_forecast_crossing
from budgets.utilization import ZERO

logger = logging.getLogger(__name__)

RECONCILE_LOOKBACK = timedelta(days=40)


def check_forecasts(*, at: datetime | None = None) -> int:
    """Emit `budget_forecast_exceeded` for each active budget whose forecast first exceeds its
    amount in the current period. Returns how many were emitted; safe to run twice."""
    at = at or clock.now()
    emitted = 0
    budgets = Budget.objects.filter(selectors.active_q(at), deleted_at__isnull=True)
    for budget in budgets.iterator(chunk_size=500):
        period = selectors.current_period_of(budget, at)
        if period is None:
            continue
        row = BudgetPeriod.objects.filter(budget=budget, period_start=period.start).first()
        if row is None or row.signals & FORECAST_BIT:
            continue
        forecast = selectors.forecast_amount(budget, period, row, at)
        if forecast <= row.budget_amount:
            continue
        with transaction.atomic():
            locked = lock_periods([row.pk])[row.pk]
            if emit_forecast_crossing(budget, locked, forecast, at=at):
                emitted += 1
    return emitted


def _ledger(row: BudgetPeriod) -> tuple[Decimal, Decimal]:
    spent = SpendEntry.objects.filter(period=row).aggregate(t=Sum("amount"))["t"] or ZERO
    reserved = (
        HoldLine.objects.filter(period=row, active=True, reservation__status="active").aggregate(
            t=Sum("amount")
        )["t"]
        or ZERO
    )
    return spent, reserved


def reconcile(*, at: datetime | None = None) -> dict[str, Any]:
    """Recompute spent and reserved of recent periods from the ledgers (spend entries and open
    holds), repair the counters, expose the drift as a metric and alert on any difference."""
    from events.services import raise_alert

    at = at or clock.now()
    ids = list(
        BudgetPeriod.objects.filter(period_end__gt=at - RECONCILE_LOOKBACK).values_list(
            "pk", flat=True
        )
    )
    total = ZERO
    drifted = 0
    for pk in ids:
        with transaction.atomic():
            row = lock_periods([pk]).get(pk)
            if row is None:
                continue
            spent, reserved = _ledger(row)
            drift = abs(row.spent_amount - spent) + abs(row.reserved_amount - reserved)
            if drift == 0:
                continue
            drifted += 1
            total += drift
            details = {
                "budget_id": str(row.budget_id),
                "period_start": row.period_start,
                "counter_spent": row.spent_amount,
                "ledger_spent": spent,
                "counter_reserved": row.reserved_amount,
                "ledger_reserved": reserved,
                "drift": drift,
            }
            # The ledgers are the truth: the counters are set back to them.
            BudgetPeriod.objects.filter(pk=row.pk).update(
                spent_amount=max(spent, ZERO), reserved_amount=max(reserved, ZERO)
            )
            raise_alert(
                tenant_id=row.tenant_id,
                alert_type="reconciliation_drift",
                severity="warning",
                title="Budget counters drifted from their ledgers",
                message=f"Budget {row.budget_id}: drift {drift} repaired from the ledgers",
                resource_id=str(row.budget_id),
                dedup_key=f"{row.period_start:%Y-%m-%dT%H:%M:%S}",
                details=details,
            )
            logger.warning("budget.reconciliation_drift", extra=details)
    RECONCILIATION_DRIFT.labels("budgets").set(float(total))
    return {"periods": len(ids), "drifted": drifted, "drift": total}
