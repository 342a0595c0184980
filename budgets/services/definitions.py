"""Budget definitions (SPEC 2.1): create, replace, soft delete; each with a receipt."""

import hashlib
import logging
import uuid
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from budgeting_site.platform import clock
from budgeting_site.platform.permissions import TENANT_ADMIN
from budgeting_site.platform.principal import Principal
from budgets import selectors
from budgets.exceptions import (
    BudgetInUse,
    BudgetInvalid,
    BudgetNotFound,
    BudgetOverlap,
    ForceDeleteForbidden,
    VersionMismatch,
)
from budgets.models import Budget, BudgetPeriod, default_notifications, default_thresholds
from budgets.periods import CUSTOM, default_start, period_at
from budgets.services import _applicable
from budgets.services.holds import release_budget_lines

logger = logging.getLogger(__name__)

#: Fields a PUT replaces; the target and the period type cannot change.
REPLACEABLE = (
    "budget_name",
    "budget_type",
    "budget_amount",
    "currency",
    "start_date",
    "end_date",
    "enforcement_action",
    "thresholds",
    "notifications",
    "approval_timeout_hours",
)
IMMUTABLE = ("allocated_to_type", "allocated_to_id", "period_type")


def _invalid(field: str, message: str) -> BudgetInvalid:
    return BudgetInvalid(f"{field}: {message}", details={field: [message]})


def _lock_target(tenant_id: str, kind: str, target_id: str) -> None:
    """Serialise writers of one target so the overlap check cannot race (PostgreSQL; SQLite
    transactions are serialised already)."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"budget-target:{tenant_id}:{kind}:{target_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _check_overlap(
    tenant_id: str,
    kind: str,
    target_id: str,
    start: datetime,
    end: datetime | None,
    exclude: uuid.UUID | None = None,
) -> None:
    others = Budget.objects.filter(
        tenant_id=tenant_id,
        allocated_to_type=kind,
        allocated_to_id=target_id,
        deleted_at__isnull=True,
    ).filter(Q(end_date__isnull=True) | Q(end_date__gt=start))
    if end is not None:
        others = others.filter(start_date__lt=end)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    clash = others.first()
    if clash is not None:
        raise BudgetOverlap(details={"budget_id": str(clash.pk)})


def _normalise(tenant_id: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    values = dict(data)
    kind = values["allocated_to_type"]
    if kind == "tenant":
        given = values.get("allocated_to_id")
        if given not in (None, "", tenant_id):
            raise _invalid("allocated_to_id", "a tenant budget is allocated to the tenant itself")
        values["allocated_to_id"] = tenant_id
    elif not values.get("allocated_to_id"):
        raise _invalid("allocated_to_id", "required for a project, user or feature budget")
    values["budget_type"] = values.get("budget_type") or kind
    values["currency"] = values.get("currency") or "USD"
    if values.get("start_date") is None:
        if values["period_type"] == CUSTOM:
            raise _invalid("start_date", "required for a custom budget")
        values["start_date"] = default_start(values["period_type"], now)
    end = values.get("end_date")
    if values["period_type"] == CUSTOM and end is None:
        raise _invalid("end_date", "required for a custom budget")
    if end is not None and end <= values["start_date"]:
        raise _invalid("end_date", "must be after start_date")
    values["thresholds"] = {**default_thresholds(), **(values.get("thresholds") or {})}
    values["notifications"] = {**default_notifications(), **(values.get("notifications") or {})}
    values.setdefault("approval_timeout_hours", 24)
    if values.get("approval_timeout_hours") is None:
        values["approval_timeout_hours"] = 24
    return values


def _receipt(budget: Budget, operation: str, actor: Principal) -> None:
    from receipts.services import emit_receipt

    emit_receipt(
        tenant_id=budget.tenant_id,
        gate_id="policy-admin",
        inputs={
            "operation": operation,
            "resource": "budget",
            "budget_id": budget.pk,
            "budget_amount": budget.budget_amount,
            "currency": budget.currency,
            "period_type": budget.period_type,
            "allocated_to_type": budget.allocated_to_type,
            "allocated_to_id": budget.allocated_to_id,
            "enforcement_action": budget.enforcement_action,
            "start_date": budget.start_date,
            "end_date": budget.end_date,
        },
        result={
            "budget_id": budget.pk,
            "version": budget.version,
            "deleted": operation == "delete",
        },
        decision_status="pass",
        rationale=f"budget {operation}",
        badges=["budget", operation],
        policy_version_ids=[f"{budget.pk}@{budget.version}"],
        actor=actor.actor,
        degraded=False,
    )


def _after_commit() -> None:
    transaction.on_commit(selectors.clear_throttle_cache)
    # This process's cached check definitions (other processes see the change through the
    # fingerprint their checks verify, budgets/services/_applicable.py).
    transaction.on_commit(_applicable.forget)


def create_budget(*, tenant_id: str, data: dict[str, Any], actor: Principal) -> Budget:
    now = clock.now()
    values = _normalise(tenant_id, data, now)
    with transaction.atomic():
        _lock_target(tenant_id, values["allocated_to_type"], values["allocated_to_id"])
        _check_overlap(
            tenant_id,
            values["allocated_to_type"],
            values["allocated_to_id"],
            values["start_date"],
            values.get("end_date"),
        )
        budget = Budget.objects.create(
            tenant_id=tenant_id,
            budget_name=values["budget_name"],
            budget_type=values["budget_type"],
            budget_amount=values["budget_amount"],
            currency=values["currency"],
            period_type=values["period_type"],
            start_date=values["start_date"],
            end_date=values.get("end_date"),
            allocated_to_type=values["allocated_to_type"],
            allocated_to_id=values["allocated_to_id"],
            enforcement_action=values["enforcement_action"],
            thresholds=values["thresholds"],
            notifications=values["notifications"],
            approval_timeout_hours=values["approval_timeout_hours"],
            version=1,
            created_at=now,
            created_by=actor.principal[:255],
            updated_at=now,
        )
        _receipt(budget, "create", actor)
        _after_commit()
    logger.info("budget.created", extra={"budget_id": str(budget.pk), "tenant_id": tenant_id})
    return budget


def update_budget(
    *,
    tenant_id: str,
    budget_id: uuid.UUID,
    data: dict[str, Any],
    version: int,
    actor: Principal,
) -> Budget:
    """PUT: replace the definition; `version` is the precondition (stale: 409)."""
    now = clock.now()
    with transaction.atomic():
        budget = (
            Budget.objects.select_for_update(no_key=True)
            .filter(tenant_id=tenant_id, pk=budget_id, deleted_at__isnull=True)
            .first()
        )
        if budget is None:
            raise BudgetNotFound()
        for name in IMMUTABLE:
            given = data.get(name)
            if given not in (None, "") and str(given) != str(getattr(budget, name)):
                raise _invalid(name, "cannot change; create a new budget instead")
        merged = {name: data.get(name) for name in REPLACEABLE if name in data}
        merged.update({name: getattr(budget, name) for name in IMMUTABLE})
        if merged.get("start_date") is None:
            merged["start_date"] = budget.start_date
        values = _normalise(tenant_id, merged, now)
        if values["currency"] != budget.currency and _has_rows(budget):
            raise _invalid("currency", "cannot change once the budget has counted spending")
        if values["start_date"] != budget.start_date and _has_rows(budget):
            raise _invalid("start_date", "cannot change once the budget has counted spending")
        if version != budget.version:
            raise VersionMismatch(details={"current_version": budget.version})
        _lock_target(tenant_id, budget.allocated_to_type, budget.allocated_to_id)
        _check_overlap(
            tenant_id,
            budget.allocated_to_type,
            budget.allocated_to_id,
            values["start_date"],
            values.get("end_date"),
            exclude=budget.pk,
        )
        fields = {name: values.get(name) for name in REPLACEABLE}
        updated = Budget.objects.filter(pk=budget.pk, version=version).update(
            **fields, version=version + 1, updated_at=now
        )
        if updated != 1:
            raise VersionMismatch(details={"current_version": budget.version})
        budget.refresh_from_db()
        _sync_periods(budget, now)
        _receipt(budget, "update", actor)
        _after_commit()
    logger.info("budget.updated", extra={"budget_id": str(budget.pk), "version": budget.version})
    return budget


def _has_rows(budget: Budget) -> bool:
    return BudgetPeriod.objects.filter(budget=budget).exists()


def _sync_periods(budget: Budget, now: datetime) -> None:
    """The new amount and dates apply to the current and future periods; past ones keep the
    amount they were judged against."""
    rows = BudgetPeriod.objects.select_for_update().filter(budget=budget, period_end__gt=now)
    for row in rows.order_by("pk"):
        period = period_at(budget.period_type, budget.start_date, budget.end_date, row.period_start)
        changes: dict[str, Any] = {}
        if row.budget_amount != budget.budget_amount:
            changes["budget_amount"] = budget.budget_amount
        if period is not None and period.end != row.period_end:
            changes["period_end"] = period.end
        if changes:
            BudgetPeriod.objects.filter(pk=row.pk).update(**changes)


def delete_budget(*, tenant_id: str, budget_id: uuid.UUID, force: bool, actor: Principal) -> Budget:
    """Soft delete. With spending or holds in the current period: 409, unless `force` by a
    tenant_admin, which also releases the budget's holds."""
    now = clock.now()
    with transaction.atomic():
        budget = (
            Budget.objects.select_for_update(no_key=True)
            .filter(tenant_id=tenant_id, pk=budget_id, deleted_at__isnull=True)
            .first()
        )
        if budget is None:
            raise BudgetNotFound()
        if force and not actor.has_any(frozenset({TENANT_ADMIN})):
            raise ForceDeleteForbidden()
        if selectors.budget_in_use(budget, now):
            if not force:
                raise BudgetInUse(details={"budget_id": str(budget.pk)})
            release_budget_lines(budget=budget, at=now)
        budget.deleted_at = now
        budget.deleted_by = actor.principal[:255]
        budget.updated_at = now
        budget.save(update_fields=["deleted_at", "deleted_by", "updated_at"])
        _receipt(budget, "delete", actor)
        _after_commit()
    logger.info("budget.deleted", extra={"budget_id": str(budget.pk), "force": force})
    return budget
