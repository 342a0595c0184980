"""Holds (SPEC 2.4): commit with the actual cost, release, extend, expire, and settlement by a
cost record. Every path locks the reservation row first, then its period rows in id order."""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from budgeting_site.platform import clock
from budgeting_site.platform.metrics import HOLDS
from budgets import fx
from budgets.exceptions import BudgetBusy, InvalidHoldTransition, ReservationNotFound
from budgets.models import (
    Budget,
    BudgetPeriod,
    HoldLine,
    Reservation,
    ReservationStatus,
    SpendEntry,
    SpendKind,
)
from budgets.services._db import (
    CounterChange,
    apply_counter_changes,
    atomic_with_retry,
    with_lock_timeout,
)
from budgets.services._db import lock_periods as _lock_periods
from budgets.services.signals import crossings_for, emit_crossings

logger = logging.getLogger(__name__)

ACTIVE = ReservationStatus.ACTIVE


@dataclass
class SettleResult:
    """What `settle_hold` did: "committed" (an open hold took the actual cost),
    "late_settled" (after expiry or release, the actual cost replaced what was counted, once),
    "already_settled" (nothing changed)."""

    outcome: str
    reservation_id: uuid.UUID
    budget_ids: list[uuid.UUID] = field(default_factory=list)


def _system_actor(job: str) -> dict[str, Any]:
    from receipts.services import system_actor

    return system_actor(job)


def _lock_reservation(tenant_id: str | None, reservation_id: uuid.UUID) -> Reservation:
    rows = with_lock_timeout(Reservation.objects.filter(pk=reservation_id)).select_for_update()
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    reservation = rows.first()
    if reservation is None:
        raise ReservationNotFound()
    return reservation


def _lines(reservation: Reservation) -> tuple[list[HoldLine], dict[Any, BudgetPeriod]]:
    lines = list(
        HoldLine.objects.filter(reservation=reservation, active=True).select_related("budget")
    )
    rows = _lock_periods(line.period_id for line in lines)
    return lines, rows


def _move(
    reservation: Reservation,
    lines: list[HoldLine],
    rows: dict[Any, BudgetPeriod],
    *,
    mode: str,
    at: datetime,
    actual: Decimal | None = None,
    currency: str = "",
    record_id: str = "",
) -> list[dict[str, Any]]:
    """Change the counters for one reservation. Modes:
    commit (reserved → actual spent), release (reserved freed), expire_commit (reserved →
    estimate spent), late_replace (spent += actual - estimate), late_add (spent += actual)."""
    changes: dict[Any, CounterChange] = {}
    entries = []
    moved = []
    budgets: dict[Any, Budget] = {}
    source = currency or reservation.currency
    for line in lines:
        row = rows[line.period_id]
        budgets[row.pk] = line.budget
        change = changes.setdefault(row.pk, CounterChange(period=row))
        converted = Decimal(0)
        if actual is not None:
            converted = fx.convert(
                actual, source, line.budget.currency, at, tenant_id=reservation.tenant_id
            )
        spend = Decimal(0)
        if mode in ("commit", "release", "expire_commit"):
            change.reserved_delta -= line.amount
        if mode == "commit":
            spend = converted
        elif mode == "expire_commit":
            spend = line.amount
        elif mode == "late_replace":
            spend = converted - line.amount
        elif mode == "late_add":
            spend = converted
        # Spending never goes below zero (the CHECK constraint stands behind this).
        spend = max(spend, -(row.spent_amount + change.spent_delta))
        change.spent_delta += spend
        kind = {
            "commit": SpendKind.HOLD_COMMIT,
            "expire_commit": SpendKind.HOLD_EXPIRY,
            "late_replace": SpendKind.LATE_RECORD,
            "late_add": SpendKind.LATE_RECORD,
        }.get(mode)
        if kind is not None and spend != 0:
            entries.append(
                SpendEntry(
                    tenant_id=reservation.tenant_id,
                    budget=line.budget,
                    period=row,
                    amount=spend,
                    kind=kind,
                    at=at,
                    reservation_id=reservation.pk,
                    record_id="",
                    created_at=at,
                )
            )
        moved.append(
            {
                "budget_id": line.budget_id,
                "spent_delta": spend,
                "reserved_delta": -line.amount
                if mode in ("commit", "release", "expire_commit")
                else Decimal(0),
            }
        )
    crossings = []
    for pk, change in changes.items():
        crossings.extend(crossings_for(budgets[pk], change))
    apply_counter_changes(changes.values())
    SpendEntry.objects.bulk_create(entries)
    emit_crossings(crossings, at=at)
    return moved


def _receipt(
    reservation: Reservation,
    *,
    operation: str,
    moved: list[dict[str, Any]],
    actor: dict[str, Any] | None,
    at: datetime,
    extra: dict[str, Any] | None = None,
) -> uuid.UUID:
    from receipts.services import emit_receipt

    budget_ids = sorted({str(m["budget_id"]) for m in moved})
    versions = dict(Budget.objects.filter(pk__in=budget_ids).values_list("pk", "version"))
    receipt = emit_receipt(
        tenant_id=reservation.tenant_id,
        gate_id="budget-check",
        inputs={
            "operation": operation,
            "reservation_id": reservation.pk,
            "estimated_cost": reservation.estimated_cost,
            "currency": reservation.currency or None,
            **(extra or {}),
        },
        result={
            "status": reservation.status,
            "expiry_outcome": reservation.expiry_outcome or None,
            "actual_cost": reservation.actual_cost,
            "expires_at": reservation.expires_at,
            "budgets": moved,
        },
        decision_status="pass",
        rationale=f"hold {operation}",
        badges=["hold", operation],
        policy_version_ids=[f"{pk}@{version}" for pk, version in sorted(versions.items())],
        actor=actor or _system_actor("budgets.holds"),
        degraded=False,
        timestamp_utc=at,
    )
    return receipt.receipt_id


# --- Expiry ---------------------------------------------------------------------------------


def expire_reservation(
    *, reservation_id: uuid.UUID, at: datetime | None = None, actor: dict[str, Any] | None = None
) -> bool:
    """Expire one overdue open hold: committed at its estimate (or released when
    BUDGET_HOLD_EXPIRY=release). True if this call expired it; running twice commits once."""
    at = at or clock.now()

    def run() -> bool:
        reservation = (
            with_lock_timeout(
                Reservation.objects.filter(pk=reservation_id, status=ACTIVE, expires_at__lte=at)
            )
            .select_for_update()
            .first()
        )
        if reservation is None:
            return False
        lines, rows = _lines(reservation)
        release = settings.BUDGET_HOLD_EXPIRY == "release"
        moved = _move(
            reservation, lines, rows, mode="release" if release else "expire_commit", at=at
        )
        reservation.status = ReservationStatus.EXPIRED
        reservation.expiry_outcome = "released" if release else "committed"
        reservation.settled_at = at
        reservation.save(update_fields=["status", "expiry_outcome", "settled_at"])
        _receipt(
            reservation,
            operation="expired",
            moved=moved,
            actor=actor or _system_actor("budgets.expire_holds"),
            at=at,
        )
        return True

    expired = atomic_with_retry(run)
    if expired:
        HOLDS.labels("expired").inc()
        logger.info("budget.hold_expired", extra={"reservation_id": str(reservation_id)})
    return expired


def expire_overdue(*, tenant_id: str | None = None, at: datetime | None = None, limit: int = 20):
    """Expire overdue open holds (of one tenant, or all); returns how many this call expired."""
    at = at or clock.now()
    overdue = Reservation.objects.filter(status=ACTIVE, expires_at__lte=at)
    if tenant_id is not None:
        overdue = overdue.filter(tenant_id=tenant_id)
    ids = list(overdue.order_by("expires_at").values_list("pk", flat=True)[:limit])
    count = 0
    for reservation_id in ids:
        try:
            if expire_reservation(reservation_id=reservation_id, at=at):
                count += 1
        except BudgetBusy:
            logger.warning("budget.hold_expiry_busy", extra={"reservation_id": str(reservation_id)})
    return count


def _expire_if_overdue(tenant_id: str, reservation_id: uuid.UUID, at: datetime) -> None:
    if Reservation.objects.filter(
        pk=reservation_id, tenant_id=tenant_id, status=ACTIVE, expires_at__lte=at
    ).exists():
        expire_reservation(reservation_id=reservation_id, at=at)


# --- The API's hold endpoints ---------------------------------------------------------------


def _transition_error(reservation: Reservation, operation: str) -> InvalidHoldTransition:
    return InvalidHoldTransition(
        f"A reservation that is {reservation.status} cannot be {operation}",
        details={"status": reservation.status, "operation": operation},
    )


def commit_reservation(
    *,
    tenant_id: str,
    reservation_id: uuid.UUID,
    actual_cost: Decimal,
    currency: str = "",
    actor: dict[str, Any] | None = None,
) -> tuple[Reservation, uuid.UUID]:
    """active → committed: the actual cost replaces the estimate on every held budget."""
    at = clock.now()
    _expire_if_overdue(tenant_id, reservation_id, at)

    def run() -> tuple[Reservation, uuid.UUID]:
        reservation = _lock_reservation(tenant_id, reservation_id)
        if reservation.status != ACTIVE:
            raise _transition_error(reservation, "committed")
        lines, rows = _lines(reservation)
        moved = _move(
            reservation, lines, rows, mode="commit", at=at, actual=actual_cost, currency=currency
        )
        reservation.status = ReservationStatus.COMMITTED
        reservation.actual_cost = actual_cost
        reservation.settled_at = at
        reservation.save(update_fields=["status", "actual_cost", "settled_at"])
        receipt_id = _receipt(
            reservation,
            operation="committed",
            moved=moved,
            actor=actor,
            at=at,
            extra={"actual_cost": actual_cost, "actual_currency": currency or None},
        )
        return reservation, receipt_id

    result = atomic_with_retry(run)
    HOLDS.labels("committed").inc()
    return result


def release_reservation(
    *, tenant_id: str, reservation_id: uuid.UUID, actor: dict[str, Any] | None = None
) -> tuple[Reservation, uuid.UUID]:
    """active → released: the hold is freed and nothing is spent."""
    at = clock.now()
    _expire_if_overdue(tenant_id, reservation_id, at)

    def run() -> tuple[Reservation, uuid.UUID]:
        reservation = _lock_reservation(tenant_id, reservation_id)
        if reservation.status != ACTIVE:
            raise _transition_error(reservation, "released")
        lines, rows = _lines(reservation)
        moved = _move(reservation, lines, rows, mode="release", at=at)
        reservation.status = ReservationStatus.RELEASED
        reservation.settled_at = at
        reservation.save(update_fields=["status", "settled_at"])
        receipt_id = _receipt(reservation, operation="released", moved=moved, actor=actor, at=at)
        return reservation, receipt_id

    result = atomic_with_retry(run)
    HOLDS.labels("released").inc()
    return result


def extend_reservation(
    *,
    tenant_id: str,
    reservation_id: uuid.UUID,
    hold_ttl_seconds: int,
    actor: dict[str, Any] | None = None,
) -> tuple[Reservation, uuid.UUID]:
    """An open hold now expires `hold_ttl_seconds` from now."""
    at = clock.now()
    _expire_if_overdue(tenant_id, reservation_id, at)
    with transaction.atomic():
        reservation = _lock_reservation(tenant_id, reservation_id)
        if reservation.status != ACTIVE:
            raise _transition_error(reservation, "extended")
        reservation.expires_at = at + timedelta(seconds=hold_ttl_seconds)
        reservation.save(update_fields=["expires_at"])
        budget_ids = HoldLine.objects.filter(reservation=reservation).values_list(
            "budget_id", flat=True
        )
        moved = [
            {"budget_id": b, "spent_delta": Decimal(0), "reserved_delta": Decimal(0)}
            for b in budget_ids
        ]
        receipt_id = _receipt(
            reservation,
            operation="extended",
            moved=moved,
            actor=actor,
            at=at,
            extra={"hold_ttl_seconds": hold_ttl_seconds},
        )
    HOLDS.labels("extended").inc()
    return reservation, receipt_id


# --- Settlement by a cost record (the costs app) --------------------------------------------


def settle_hold(
    *,
    tenant_id: str,
    reservation_id: uuid.UUID,
    actual_cost: Decimal,
    currency: str = "",
    record_id: Any = "",
    at: datetime | None = None,
    actor: dict[str, Any] | None = None,
) -> SettleResult:
    at = at or clock.now()
    record = str(record_id or "")[:128]
    now = clock.now()
    _expire_if_overdue(tenant_id, reservation_id, now)

    def run() -> SettleResult:
        reservation = _lock_reservation(tenant_id, reservation_id)
        status = reservation.status
        if status == ReservationStatus.COMMITTED or reservation.late_settled:
            return SettleResult("already_settled", reservation.pk)
        lines, rows = _lines(reservation)
        if status == ACTIVE:
            mode, outcome = "commit", "committed"
            reservation.status = ReservationStatus.COMMITTED
            reservation.settled_at = now
        elif status == ReservationStatus.EXPIRED and reservation.expiry_outcome == "committed":
            mode, outcome = "late_replace", "late_settled"
        else:  # expired-and-released, or released
            mode, outcome = "late_add", "late_settled"
        moved = _move(
            reservation, lines, rows, mode=mode, at=at, actual=actual_cost, currency=currency
        )
        reservation.actual_cost = actual_cost
        reservation.record_id = record
        reservation.late_settled = outcome == "late_settled"
        reservation.save(
            update_fields=["status", "settled_at", "actual_cost", "record_id", "late_settled"]
        )
        _receipt(
            reservation,
            operation="settled" if outcome == "committed" else "late_settled",
            moved=moved,
            actor=actor,
            at=now,
            extra={
                "actual_cost": actual_cost,
                "actual_currency": currency or None,
                "record_id": record or None,
            },
        )
        return SettleResult(outcome, reservation.pk, [line.budget_id for line in lines])

    result = atomic_with_retry(run)
    HOLDS.labels(result.outcome).inc()
    return result


def release_budget_lines(*, budget: Budget, at: datetime) -> int:
    """Release the open holds of one budget only (a forced delete): the other budgets of each
    reservation keep theirs. Caller holds a transaction."""
    lines = list(HoldLine.objects.filter(budget=budget, active=True, reservation__status=ACTIVE))
    if not lines:
        return 0
    rows = _lock_periods(line.period_id for line in lines)
    changes: dict[Any, CounterChange] = {}
    for line in lines:
        row = rows[line.period_id]
        change = changes.setdefault(row.pk, CounterChange(period=row))
        change.reserved_delta -= line.amount
    apply_counter_changes(changes.values())
    HoldLine.objects.filter(pk__in=[line.pk for line in lines]).update(active=False)
    HOLDS.labels("released").inc(len(lines))
    return len(lines)
