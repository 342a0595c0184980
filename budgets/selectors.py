"""Reads of the budgets app, always scoped to a tenant.

For the rate-limit engine: `throttle_factor(tenant_id, scope_type, scope_id) -> Decimal | None`
(SPEC 2.3): the smallest factor of the tenant's throttle budgets with that scope, or at tenant
level, whose current utilization (spent + reserved) is above 80 %; None when none is. It is on
the rate-limit hot path, so it is cached in the process for `THROTTLE_CACHE_SECONDS` (1 s) and
invalidated at once by any budget write of this process; other processes see a change within
that time. Inside a transaction it always reads the database (read-your-writes).
"""

import threading
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Sum

from budgeting_site.platform import clock
from budgets.exceptions import BudgetNotFound, ReservationNotFound
from budgets.models import Budget, BudgetPeriod, Enforcement, HoldLine, Reservation, SpendEntry
from budgets.periods import Period, period_at, periods_back
from budgets.utilization import (
    ZERO,
    clamped_ratio,
    money,
    percent_of,
    throttle_factor_for,
)

THROTTLE_CACHE_SECONDS = 1.0
FORECAST_WINDOW = timedelta(days=7)
MAX_UTILIZATION_PERIODS = 5000


# --- Budgets --------------------------------------------------------------------------------


def active_q(at: datetime) -> Q:
    return Q(start_date__lte=at) & (Q(end_date__isnull=True) | Q(end_date__gt=at))


def applicable_budgets(
    *, tenant_id: str, at: datetime, targets: set[tuple[str, str]]
) -> list[Budget]:
    """The tenant's budgets active at `at` that are tenant-level or whose target is one of
    `targets` ((allocated_to_type, allocated_to_id) pairs)."""
    match = Q(allocated_to_type="tenant")
    for kind, target_id in targets:
        match |= Q(allocated_to_type=kind, allocated_to_id=target_id)
    return list(
        Budget.objects.filter(match, active_q(at), tenant_id=tenant_id, deleted_at__isnull=True)
    )


def get_budget(*, tenant_id: str, budget_id: uuid.UUID) -> Budget:
    budget = Budget.objects.filter(
        tenant_id=tenant_id, pk=budget_id, deleted_at__isnull=True
    ).first()
    if budget is None:
        raise BudgetNotFound()
    return budget


def list_budgets(
    *,
    tenant_id: str,
    budget_type: str | None = None,
    allocated_to_type: str | None = None,
    allocated_to_id: str | None = None,
    active_only: bool = False,
    at: datetime | None = None,
) -> QuerySet[Budget]:
    budgets = Budget.objects.filter(tenant_id=tenant_id, deleted_at__isnull=True)
    if budget_type:
        budgets = budgets.filter(budget_type=budget_type)
    if allocated_to_type:
        budgets = budgets.filter(allocated_to_type=allocated_to_type)
    if allocated_to_id:
        budgets = budgets.filter(allocated_to_id=allocated_to_id)
    if active_only:
        budgets = budgets.filter(active_q(at or clock.now()))
    return budgets.order_by("-created_at", "-id")


def default_currency(tenant_id: str) -> str | None:
    """The currency of the tenant's first budget (the costs app's default), else None."""
    return (
        Budget.objects.filter(tenant_id=tenant_id, deleted_at__isnull=True)
        .order_by("created_at", "id")
        .values_list("currency", flat=True)
        .first()
    )


# --- Periods, utilization and forecast ------------------------------------------------------


def current_period_of(budget: Budget, at: datetime) -> Period | None:
    return period_at(budget.period_type, budget.start_date, budget.end_date, at)


def forecast_amount(
    budget: Budget,
    period: Period,
    row: BudgetPeriod | None,
    at: datetime,
    recent: Decimal | None = None,
) -> Decimal:
    """spent + (the daily spending rate over the last min(7 days, period elapsed)) x the days
    left in the period; holds are not counted (SPEC 2.6). `recent`: the spending of that
    window when the caller has it already."""
    if row is None:
        return money(ZERO)
    window = min(FORECAST_WINDOW, at - period.start)
    left = period.end - at
    if window <= timedelta(0) or left <= timedelta(0):
        return money(row.spent_amount)
    if recent is None:
        recent = _recent_spending([row.pk], at).get(row.pk, ZERO)
    seconds = Decimal(str(window.total_seconds()))
    left_seconds = Decimal(str(left.total_seconds()))
    return money(row.spent_amount + recent / seconds * left_seconds)


def _recent_spending(period_ids: list[Any], at: datetime) -> dict[Any, Decimal]:
    """Spending of each period in the last 7 days before `at`. A period's entries are never
    dated before its start, so this is also the spending of min(7 days, elapsed)."""
    if not period_ids:
        return {}
    rows = (
        SpendEntry.objects.filter(period_id__in=period_ids, at__gte=at - FORECAST_WINDOW, at__lt=at)
        .values("period_id")
        .annotate(total=Sum("amount"))
    )
    return {r["period_id"]: r["total"] or ZERO for r in rows}


def period_view(
    budget: Budget, period: Period, row: BudgetPeriod | None, *, forecast: Decimal | None
) -> dict[str, Any]:
    amount = row.budget_amount if row is not None else budget.budget_amount
    spent = row.spent_amount if row is not None else ZERO
    reserved = row.reserved_amount if row is not None else ZERO
    used = spent + reserved
    view = {
        "period_start": period.start,
        "period_end": period.end,
        "budget_amount": amount,
        "spent_amount": spent,
        "reserved_amount": reserved,
        "remaining_budget": max(amount - used, ZERO),
        "utilization_ratio": clamped_ratio(used, amount),
        "utilization_percent": percent_of(used, amount),
    }
    if forecast is not None:
        view["forecast_amount"] = forecast
    return view


def current_periods(budgets: list[Budget], at: datetime) -> dict[uuid.UUID, dict[str, Any] | None]:
    """`current_period` of each budget (None when it is not active at `at`)."""
    periods = {b.pk: current_period_of(b, at) for b in budgets}
    starts = {p.start for p in periods.values() if p is not None}
    rows = {}
    if starts:
        for row in BudgetPeriod.objects.filter(
            budget_id__in=[b.pk for b in budgets], period_start__in=starts
        ):
            rows[(row.budget_id, row.period_start)] = row
    recent = _recent_spending([r.pk for r in rows.values()], at)
    views: dict[uuid.UUID, dict[str, Any] | None] = {}
    for budget in budgets:
        period = periods[budget.pk]
        if period is None:
            views[budget.pk] = None
            continue
        row = rows.get((budget.pk, period.start))
        spent_recently = recent.get(row.pk, ZERO) if row is not None else ZERO
        forecast = forecast_amount(budget, period, row, at, spent_recently)
        views[budget.pk] = period_view(budget, period, row, forecast=forecast)
    return views


def utilization_rows(budget: Budget, at: datetime) -> list[dict[str, Any]]:
    """One row per period from the budget's first up to the current one (at most the newest
    MAX_UTILIZATION_PERIODS), newest first."""
    periods = list(
        periods_back(
            budget.period_type,
            budget.start_date,
            budget.end_date,
            at,
            limit=MAX_UTILIZATION_PERIODS,
        )
    )
    rows = {row.period_start: row for row in BudgetPeriod.objects.filter(budget=budget)}
    views = []
    for period in periods:
        row = rows.get(period.start)
        view = period_view(budget, period, row, forecast=None)
        view["current"] = period.start <= at < period.end
        views.append(view)
    return views


def budget_in_use(budget: Budget, at: datetime) -> bool:
    """Spending or holds in the current period (SPEC 2.1, DELETE)."""
    period = current_period_of(budget, at)
    if period is not None:
        row = BudgetPeriod.objects.filter(budget=budget, period_start=period.start).first()
        if row is not None and (row.spent_amount > 0 or row.reserved_amount > 0):
            return True
    return HoldLine.objects.filter(
        budget=budget, active=True, reservation__status="active"
    ).exists()


# --- Reservations ---------------------------------------------------------------------------


def get_reservation(*, tenant_id: str, reservation_id: uuid.UUID) -> Reservation:
    reservation = Reservation.objects.filter(tenant_id=tenant_id, pk=reservation_id).first()
    if reservation is None:
        raise ReservationNotFound()
    return reservation


def reservation_lines(reservation: Reservation) -> list[HoldLine]:
    return list(HoldLine.objects.filter(reservation=reservation).order_by("budget_id"))


# --- The throttle factor for the rate-limit engine ------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str, str], tuple[int, float, Decimal | None]] = {}
_generation = 0


def clear_throttle_cache() -> None:
    """Forget every cached factor (called after any budget write in this process)."""
    global _generation
    with _cache_lock:
        _generation += 1
        _cache.clear()


def throttle_factor(tenant_id: str, scope_type: str, scope_id: str) -> Decimal | None:
    key = (tenant_id, scope_type, str(scope_id))
    fresh_read = connection.in_atomic_block
    if not fresh_read:
        hit = _cache.get(key)
        if (
            hit is not None
            and hit[0] == _generation
            and time.monotonic() - hit[1] < THROTTLE_CACHE_SECONDS
        ):
            return hit[2]
    generation = _generation
    value = _compute_throttle_factor(tenant_id, scope_type, str(scope_id), clock.now())
    if not fresh_read:
        with _cache_lock:
            if generation == _generation:
                _cache[key] = (generation, time.monotonic(), value)
    return value


def _compute_throttle_factor(
    tenant_id: str, scope_type: str, scope_id: str, at: datetime
) -> Decimal | None:
    scope = Q(budget__allocated_to_type="tenant")
    if scope_type != "tenant":
        scope |= Q(budget__allocated_to_type=scope_type, budget__allocated_to_id=scope_id)
    rows = BudgetPeriod.objects.filter(
        scope,
        tenant_id=tenant_id,
        budget__deleted_at__isnull=True,
        budget__enforcement_action=Enforcement.THROTTLE,
        period_start__lte=at,
        period_end__gt=at,
    ).values_list("spent_amount", "reserved_amount", "budget_amount")
    factors = [
        f
        for spent, reserved, amount in rows
        if (f := throttle_factor_for(spent + reserved, amount)) is not None
    ]
    return min(factors) if factors else None


def rate_limit_throttle_factors(*, tenant_id: str) -> list[tuple[str, str, Decimal]]:
    """Every throttle budget of the tenant above 80 % now, as (scope_type, scope_id, factor):
    the rate-limit engine applies the smallest that matches a policy's scope (a tenant budget
    matches all of the tenant's policies). The engine caches this itself."""
    at = clock.now()
    rows = BudgetPeriod.objects.filter(
        tenant_id=tenant_id,
        budget__deleted_at__isnull=True,
        budget__enforcement_action=Enforcement.THROTTLE,
        period_start__lte=at,
        period_end__gt=at,
    ).values_list(
        "budget__allocated_to_type",
        "budget__allocated_to_id",
        "spent_amount",
        "reserved_amount",
        "budget_amount",
    )
    factors = []
    for kind, target, spent, reserved, amount in rows:
        factor = throttle_factor_for(spent + reserved, amount)
        if factor is not None:
            factors.append((kind, target, factor))
    return factors


# --- The admin dashboard and the approval pages ---------------------------------------------

#: At most this many budgets feed the dashboard's utilization panel (the most used first; the
#: panel itself draws the top 15).
DASHBOARD_MAX_BUDGETS = 500
#: The longest range `daily_spending` answers, in days.
DAILY_SPENDING_MAX_DAYS = 366


def dashboard_budget_utilization(
    *, tenant_ids: list[str] | None, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The admin dashboard's `budget_utilization` panel: the current period of every budget
    active at `end` (`tenant_ids` None: every tenant), as dicts {budget_id, name, tenant_id,
    currency, amount, spent, reserved, forecast}. The panel is "now", so `start` is unused.

    Budgets are read most used first (spent + reserved over the amount of the current period
    row, budgets without a row last), so the cap of DASHBOARD_MAX_BUDGETS never drops the
    budgets the panel shows. Three queries: the budgets, their current period rows, and the
    spending of the forecast window of those rows.
    """
    from django.db.models import F, FloatField, OuterRef, Subquery
    from django.db.models.functions import Cast

    del start
    current = BudgetPeriod.objects.filter(
        budget=OuterRef("pk"), period_start__lte=end, period_end__gt=end
    )
    # Only an order, so floating point is enough (and SQLite would divide whole amounts as
    # integers).
    used = Cast(F("spent_amount") + F("reserved_amount"), FloatField()) / Cast(
        "budget_amount", FloatField()
    )
    budgets = Budget.objects.filter(active_q(end), deleted_at__isnull=True)
    if tenant_ids is not None:
        budgets = budgets.filter(tenant_id__in=tenant_ids)
    budgets = budgets.annotate(
        used_ratio=Subquery(current.annotate(ratio=used).values("ratio")[:1])
    ).order_by(F("used_ratio").desc(nulls_last=True), "tenant_id", "budget_name", "id")
    chosen = list(budgets[:DASHBOARD_MAX_BUDGETS])
    views = current_periods(chosen, end)
    rows = []
    for budget in chosen:
        view = views.get(budget.pk)
        if view is None:
            continue
        rows.append(
            {
                "budget_id": budget.pk,
                "name": budget.budget_name,
                "tenant_id": budget.tenant_id,
                "currency": budget.currency,
                "amount": view["budget_amount"],
                "spent": view["spent_amount"],
                "reserved": view["reserved_amount"],
                "forecast": view.get("forecast_amount"),
            }
        )
    return rows


def daily_spending(
    *, tenant_id: str, budget_id: uuid.UUID, start: datetime, end: datetime
) -> list[tuple[Any, Decimal]]:
    """The budget's own spending ledger summed by UTC day over `[start, end)`: one
    `(day: date, amount: Decimal)` per UTC day the range touches, oldest first, 0 for a day
    without spending (so "the last 7 days" are always 7 rows). Amounts are in the budget's
    currency and net of reversals; every kind of entry counts (committed holds, expired holds
    committed at their estimate, cost records); holds still open are not spending. Another
    tenant's budget, or an unknown one, has no spending. At most DAILY_SPENDING_MAX_DAYS days
    (ValueError beyond). Reads the ledger's rows of that budget in the range (indexed by
    budget)."""
    from datetime import UTC

    from django.db.models.functions import TruncDate

    if end <= start:
        return []
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    days = (last - first).days + 1
    if days > DAILY_SPENDING_MAX_DAYS:
        raise ValueError(f"daily_spending covers at most {DAILY_SPENDING_MAX_DAYS} days")
    totals = {
        (day.date() if isinstance(day, datetime) else day): total
        for day, total in SpendEntry.objects.filter(
            tenant_id=tenant_id, budget_id=budget_id, at__gte=start, at__lt=end
        )
        .annotate(day=TruncDate("at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount"))
        .values_list("day", "total")
        .order_by("day")
    }
    return [
        (day, money(Decimal(totals.get(day) or ZERO)))
        for day in (first + timedelta(days=n) for n in range(days))
    ]
