"""Thresholds (80 / 90 / 100 %) and forecast crossings (SPEC 2.5, 2.6).

Exactly once per budget, period and threshold across processes: the period row is locked by
the change that crosses, its `signals` bits are set in the same UPDATE, and a unique
`BudgetSignal` row stands behind the bits. The event and the alert are written in that same
transaction.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from budgeting_site.platform import clock
from budgets.models import FORECAST_BIT, THRESHOLDS, Budget, BudgetPeriod, BudgetSignal
from budgets.services._db import CounterChange
from budgets.utilization import ratio_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crossing:
    budget: Budget
    period: BudgetPeriod
    threshold: str
    utilization: Decimal


def crossings_for(budget: Budget, change: CounterChange) -> list[Crossing]:
    """Thresholds this change makes the period reach for the first time; sets their bits on
    the change so they are written with the counters."""
    period = change.period
    used = change.new_spent + change.new_reserved
    utilization = ratio_of(used, period.budget_amount)
    found = []
    for name, (fraction, bit, _severity) in THRESHOLDS.items():
        if not budget.threshold_enabled(name):
            continue
        if period.signals & bit or change.signal_bits & bit:
            continue
        if utilization >= Decimal(fraction):
            change.signal_bits |= bit
            found.append(Crossing(budget, period, name, utilization))
    return found


def emit_crossings(crossings: list[Crossing], *, at: datetime | None = None) -> int:
    """Write the unique row, the event and the alert of each crossing (call after the counter
    UPDATE, in the same transaction). Returns how many were new."""
    if not crossings:
        return 0
    from events.services import publish_event, raise_alert

    at = at or clock.now()
    emitted = 0
    for crossing in crossings:
        budget, period = crossing.budget, crossing.period
        if not _claim(budget, period, crossing.threshold, crossing.utilization, at):
            continue
        emitted += 1
        percent = int(Decimal(THRESHOLDS[crossing.threshold][0]) * 100)
        severity = THRESHOLDS[crossing.threshold][2]
        remaining = max(period.budget_amount - period.spent_amount - period.reserved_amount, 0)
        payload = {
            "budget_id": str(budget.pk),
            "threshold": crossing.threshold,
            "threshold_percent": percent,
            "utilization_ratio": crossing.utilization,
            "spent_amount": period.spent_amount,
            "reserved_amount": period.reserved_amount,
            "remaining_budget": remaining,
            "budget_amount": period.budget_amount,
            "currency": budget.currency,
            "enforcement_action": budget.enforcement_action,
            "period_start": period.period_start,
            "period_end": period.period_end,
        }
        publish_event(
            tenant_id=budget.tenant_id, event_type="budget_threshold_exceeded", payload=payload
        )
        raise_alert(
            tenant_id=budget.tenant_id,
            alert_type="budget_threshold_exceeded",
            severity=severity,
            title=f"Budget {budget.budget_name} reached {percent}%",
            message=(
                f"Budget {budget.budget_name} reached {percent}% of {period.budget_amount} "
                f"{budget.currency} in the period starting {period.period_start:%Y-%m-%d}"
            ),
            resource_id=str(budget.pk),
            dedup_key=f"{period.period_start:%Y-%m-%dT%H:%M:%S}:{crossing.threshold}",
            details=payload,
        )
        logger.info(
            "budget.threshold_crossed",
            extra={"budget_id": str(budget.pk), "threshold": crossing.threshold},
        )
    return emitted


def _claim(budget: Budget, period: BudgetPeriod, kind: str, value: Decimal, at: datetime) -> bool:
    try:
        with transaction.atomic():
            BudgetSignal.objects.create(
                tenant_id=budget.tenant_id,
                budget=budget,
                period_start=period.period_start,
                kind=kind,
                value=min(value, Decimal("1E17")).quantize(Decimal("1E-10")),
                created_at=at,
            )
    except IntegrityError:
        return False
    return True


def emit_forecast_crossing(
    budget: Budget, period: BudgetPeriod, forecast: Decimal, *, at: datetime
) -> bool:
    """The forecast crossing of a locked period row, once per period (caller holds the lock)."""
    if period.signals & FORECAST_BIT:
        return False
    from events.services import publish_event, raise_alert

    BudgetPeriod.objects.filter(pk=period.pk).update(signals=period.signals | FORECAST_BIT)
    period.signals |= FORECAST_BIT
    if not _claim(budget, period, "forecast", forecast, at):
        return False
    payload = {
        "budget_id": str(budget.pk),
        "forecast_amount": forecast,
        "budget_amount": period.budget_amount,
        "currency": budget.currency,
        "period_start": period.period_start,
        "period_end": period.period_end,
        "spent_amount": period.spent_amount,
    }
    publish_event(
        tenant_id=budget.tenant_id, event_type="budget_forecast_exceeded", payload=payload
    )
    raise_alert(
        tenant_id=budget.tenant_id,
        alert_type="budget_forecast_exceeded",
        severity="warning",
        title=f"Budget {budget.budget_name} is forecast to exceed its amount",
        message=(
            f"Forecast {forecast} {budget.currency} exceeds {period.budget_amount} "
            f"{budget.currency} by the end of the period ({period.period_end:%Y-%m-%d})"
        ),
        resource_id=str(budget.pk),
        dedup_key=f"{period.period_start:%Y-%m-%dT%H:%M:%S}:forecast",
        details=payload,
    )
    logger.info("budget.forecast_exceeded", extra={"budget_id": str(budget.pk)})
    return True
