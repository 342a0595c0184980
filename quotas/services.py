"""Every write of the quotas app (SPEC 5). Each function owns its transaction and writes its
receipt, outbox events and alerts in that same transaction.

Consumption is decided and recorded in one atomic step: on PostgreSQL a conditional UPDATE
(`used + amount <= allocated + burst`) whose row count is the decision, with the usage-history
row in the same transaction; the CHECK constraint `used <= allocated + burst` stands behind it.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.errors import DomainError
from budgeting_site.platform.metrics import DECISIONS, RECONCILIATION_DRIFT
from events.services import publish_event, raise_alert
from quotas import selectors
from quotas.allocation import (
    DEFAULT_TIER_SHARES,
    DYNAMIC_HEADROOM,
    Entity,
    SplitError,
    split_pool,
    whole_units_up,
)
from quotas.exceptions import (
    InvalidQuota,
    QuotaBelowUsage,
    QuotaInUse,
    QuotaOverlap,
    QuotaVersionMismatch,
)
from quotas.models import (
    AllocationType,
    Quota,
    QuotaUsage,
    RenewalStrategy,
    renewal_lead,
    utilization_ratio,
)
from receipts.canonical import canonical_bytes, sha256_prefixed, to_jsonable
from receipts.models import Receipt
from receipts.services import emit_receipt, system_actor

logger = logging.getLogger(__name__)

GATE = "quota-management"
ADMIN_GATE = "policy-admin"
DEFAULT_PERIOD = timedelta(days=30)
WARNING_THRESHOLDS = ((Decimal("0.8"), "warned_80_at", 80), (Decimal("0.9"), "warned_90_at", 90))
RENEWAL_FAILURES_BEFORE_ALERT = 3
#: a usage-based renewal projects use only from at least this share of the period.
MIN_OBSERVED_SHARE = Decimal("0.5")
RATIO_PLACES = Decimal("0.0000000001")
RECONCILE_WINDOW = timedelta(days=35)
MAX_RENEWALS_PER_RUN = 1000


# --- Shared pieces --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    allocation_type: str
    allocated_to_id: str


def resolve_target(
    tenant_id: str, allocation_type: str | None, allocated_to_id: str | None
) -> Target:
    """A tenant-level target is the tenant itself; any other target names its id."""
    allocation_type = allocation_type or AllocationType.TENANT
    if allocation_type == AllocationType.TENANT:
        if allocated_to_id not in (None, "", tenant_id):
            raise InvalidQuota(
                "allocated_to_id of a tenant quota is the tenant id",
                details={"allocated_to_id": ["must be the tenant id for allocation_type tenant"]},
            )
        return Target(AllocationType.TENANT, tenant_id)
    if not allocated_to_id:
        raise InvalidQuota(
            f"allocated_to_id is required for allocation_type {allocation_type}",
            details={"allocated_to_id": ["This field is required."]},
        )
    return Target(str(allocation_type), allocated_to_id)


def _money(value: Decimal) -> Decimal:
    return value.quantize(RATIO_PLACES, rounding=ROUND_HALF_EVEN)


def _ratio(used: Decimal, allocated: Decimal) -> Decimal:
    return utilization_ratio(used, allocated)


def _warning_level(quota: Quota) -> str:
    if quota.used_amount >= quota.capacity:
        return "exhausted"
    ratio = quota.used_amount / quota.allocated_amount
    if ratio >= Decimal("0.9"):
        return "critical"
    if ratio >= Decimal("0.8"):
        return "warning"
    return "normal"


def _version_id(quota: Quota) -> str:
    return f"{quota.pk}@{quota.version}"


def _item_hash(item: dict[str, Any]) -> str:
    return sha256_prefixed(canonical_bytes(to_jsonable(item)))


def _allocated_event(quota: Quota) -> None:
    publish_event(
        tenant_id=quota.tenant_id,
        event_type="quota_allocated",
        payload={
            "quota_id": quota.pk,
            "resource_type": quota.resource_type,
            "allocated_amount": quota.allocated_amount,
            "allocation_type": quota.allocation_type,
            "allocated_to_id": quota.allocated_to_id,
            "period_start": quota.period_start,
            "period_end": quota.period_end,
            "renewed_from": quota.renewed_from,
        },
    )


def quota_summary(quota: Quota) -> dict[str, Any]:
    """The facts of a quota that receipts record."""
    return {
        "quota_id": quota.pk,
        "resource_type": quota.resource_type,
        "allocation_type": quota.allocation_type,
        "allocated_to_id": quota.allocated_to_id,
        "allocated_amount": quota.allocated_amount,
        "max_burst_amount": quota.max_burst_amount,
        "period_start": quota.period_start,
        "period_end": quota.period_end,
        "version": quota.version,
    }


def _is_constraint(exc: IntegrityError, name: str) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    return constraint == name if constraint else name in str(exc)


# --- Allocation -----------------------------------------------------------------------------


@dataclass
class QuotaSpec:
    resource_type: str
    target: Target
    allocated_amount: Decimal
    period_start: datetime
    period_end: datetime
    max_burst_amount: Decimal = Decimal(0)
    auto_renew: bool = True
    renewal_strategy: str = RenewalStrategy.SAME
    strategy: dict[str, Any] | None = None
    idempotency_key: str | None = None
    renewed_from: uuid.UUID | None = None


def _period(
    period_start: datetime | None, period_end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    start = period_start or now
    end = period_end or start + DEFAULT_PERIOD
    if end <= start:
        raise InvalidQuota(
            "period_end must be after period_start",
            details={"period_end": ["must be after period_start"]},
        )
    return start, end


def _insert_quota(
    tenant_id: str,
    spec: QuotaSpec,
    *,
    created_by: str,
    now: datetime,
    quota_id: uuid.UUID | None = None,
) -> Quota:
    """Create one quota (and its `quota_allocated` event) in the caller's transaction.

    The overlap check is serialized on SQLite (one writer at a time); on PostgreSQL the
    exclusion constraint decides a race the check cannot see.
    """
    clash = selectors.overlapping_quota(
        tenant_id=tenant_id,
        resource_type=spec.resource_type,
        allocation_type=spec.target.allocation_type,
        allocated_to_id=spec.target.allocated_to_id,
        period_start=spec.period_start,
        period_end=spec.period_end,
    )
    if clash is not None:
        raise _overlap(clash.pk)
    quota = Quota(
        quota_id=quota_id or uuid.uuid4(),
        tenant_id=tenant_id,
        resource_type=spec.resource_type,
        allocation_type=spec.target.allocation_type,
        allocated_to_id=spec.target.allocated_to_id,
        allocated_amount=spec.allocated_amount,
        max_burst_amount=spec.max_burst_amount,
        period_start=spec.period_start,
        period_end=spec.period_end,
        auto_renew=spec.auto_renew,
        renewal_strategy=spec.renewal_strategy,
        strategy=spec.strategy,
        renewed_from=spec.renewed_from,
        renewal_due_at=spec.period_end - renewal_lead(spec.period_start, spec.period_end),
        idempotency_key=spec.idempotency_key,
        created_at=now,
        updated_at=now,
        created_by=created_by[:255],
    )
    try:
        with transaction.atomic():
            quota.save(force_insert=True)
    except IntegrityError as exc:
        if _is_constraint(exc, "quota_no_overlap"):
            raise _overlap(None) from exc
        raise
    _allocated_event(quota)
    return quota


def _overlap(existing: Any) -> QuotaOverlap:
    details = {"conflicting_quota_id": str(existing)} if existing else {}
    return QuotaOverlap(details=details)


def _amount_from_strategy(
    tenant_id: str,
    resource_type: str,
    target: Target,
    strategy: dict[str, Any],
    period: timedelta,
    now: datetime,
) -> Decimal:
    if strategy["type"] == "reserved":
        return Decimal(strategy["amount"])
    average = selectors.average_use_per_period(
        tenant_id=tenant_id,
        resource_type=resource_type,
        allocation_type=target.allocation_type,
        allocated_to_id=target.allocated_to_id,
        period_length=period,
        now=now,
    )
    if average is None:
        raise InvalidQuota(
            "strategy dynamic needs a quota period of this target and resource type that "
            "ended in the last 30 days",
            details={"strategy": ["no usage history in the last 30 days"]},
        )
    return whole_units_up(DYNAMIC_HEADROOM * average)


def build_spec(tenant_id: str, data: dict[str, Any], now: datetime) -> QuotaSpec:
    """A validated allocation request → what to create (resolves target, period, strategy)."""
    target = resolve_target(tenant_id, data.get("allocation_type"), data.get("allocated_to_id"))
    start, end = _period(data.get("period_start"), data.get("period_end"), now)
    amount = data.get("allocated_amount")
    strategy = data.get("strategy")
    if (amount is None) == (strategy is None):
        raise InvalidQuota(
            "give either allocated_amount or strategy",
            details={"allocated_amount": ["give either allocated_amount or strategy"]},
        )
    if strategy is not None:
        amount = _amount_from_strategy(
            tenant_id, data["resource_type"], target, strategy, end - start, now
        )
    assert amount is not None
    return QuotaSpec(
        resource_type=data["resource_type"],
        target=target,
        allocated_amount=amount,
        period_start=start,
        period_end=end,
        max_burst_amount=data.get("max_burst_amount") or Decimal(0),
        auto_renew=data.get("auto_renew", True),
        renewal_strategy=data.get("renewal_strategy") or RenewalStrategy.SAME,
        strategy=to_jsonable(strategy) if strategy is not None else None,
        idempotency_key=data.get("idempotency_key"),
    )


def allocate_quota(
    *, tenant_id: str, actor: dict[str, Any], data: dict[str, Any]
) -> tuple[Quota, Receipt]:
    """`POST /quotas/allocate`: one quota, its receipt and its `quota_allocated` event."""
    now = clock.now()
    spec = build_spec(tenant_id, data, now)
    with transaction.atomic():
        quota = _insert_quota(tenant_id, spec, created_by=actor.get("principal", ""), now=now)
        receipt = emit_receipt(
            tenant_id=tenant_id,
            gate_id=GATE,
            inputs={"operation": "allocate", **_request_facts(data)},
            result=quota_summary(quota),
            decision_status="pass",
            rationale="quota allocated",
            badges=[spec.strategy["type"]] if spec.strategy else [],
            policy_version_ids=[_version_id(quota)],
            actor=actor,
        )
    logger.info("quota.allocated", extra={"quota_id": str(quota.pk)})
    return quota, receipt


def _request_facts(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "tenant_id" and v is not None}


@dataclass
class BatchItem:
    """One entry of the list form: validated `data`, or the validation failure."""

    index: int
    idempotency_key: str | None
    data: dict[str, Any] | None = None
    error: DomainError | None = None


def allocate_batch(
    *, tenant_id: str, actor: dict[str, Any], items: Sequence[BatchItem]
) -> tuple[uuid.UUID, list[dict[str, Any]], Receipt]:
    """The list form: each item on its own (partial success), one receipt for the batch.

    A repeated item (same `idempotency_key` as a live quota) answers `duplicate` with the
    quota it created first.
    """
    now = clock.now()
    batch_id = uuid.uuid4()
    results: list[dict[str, Any]] = []
    with transaction.atomic():
        for item in items:
            results.append(_batch_item(tenant_id, actor, item, batch_id, now))
        receipt = emit_receipt(
            tenant_id=tenant_id,
            gate_id=GATE,
            inputs={"operation": "allocate_batch", "batch_id": batch_id, "item_count": len(items)},
            result={
                "batch_id": batch_id,
                "created_count": sum(r["status"] == "created" for r in results),
                "duplicate_count": sum(r["status"] == "duplicate" for r in results),
                "failed_count": sum(r["status"] == "failed" for r in results),
                "items": [
                    {"index": r["index"], "id": r["quota_id"], "sha256": _item_hash(r)}
                    for r in results
                ],
            },
            decision_status="pass",
            rationale="quota batch allocated",
            policy_version_ids=[f"{r['quota_id']}@1" for r in results if r["status"] == "created"],
            actor=actor,
        )
    for r in results:
        r["receipt_id"] = str(receipt.receipt_id)
    return batch_id, results, receipt


def _batch_item(
    tenant_id: str, actor: dict[str, Any], item: BatchItem, batch_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    base = {"index": item.index, "idempotency_key": item.idempotency_key}
    if item.error is not None:
        return _failed(base, item.error)
    assert item.data is not None
    existing = _by_item_key(tenant_id, item.idempotency_key)
    if existing is not None:
        return _item_result(base, "duplicate", existing)
    try:
        spec = build_spec(tenant_id, item.data, now)
        spec.strategy = {**(spec.strategy or {}), "batch_id": str(batch_id)}
        with transaction.atomic():
            quota = _insert_quota(tenant_id, spec, created_by=actor.get("principal", ""), now=now)
    except DomainError as exc:
        return _failed(base, exc)
    except IntegrityError as exc:
        existing = _by_item_key(tenant_id, item.idempotency_key)
        if existing is not None:
            return _item_result(base, "duplicate", existing)
        logger.warning("quota.batch_item_refused", extra={"index": item.index}, exc_info=exc)
        return _failed(base, QuotaOverlap())
    return _item_result(base, "created", quota)


def _by_item_key(tenant_id: str, key: str | None) -> Quota | None:
    if not key:
        return None
    return selectors.live_quotas(tenant_id).filter(idempotency_key=key).first()


def _item_result(base: dict[str, Any], status: str, quota: Quota) -> dict[str, Any]:
    return {
        **base,
        "status": status,
        "quota_id": str(quota.pk),
        "allocated_amount": quota.allocated_amount,
        "error_code": None,
        "message": None,
    }


def _failed(base: dict[str, Any], error: DomainError) -> dict[str, Any]:
    return {
        **base,
        "status": "failed",
        "quota_id": None,
        "allocated_amount": None,
        "error_code": error.error_code,
        "message": error.message,
    }


@dataclass(frozen=True)
class PoolEntity:
    allocation_type: str | None
    allocated_to_id: str | None
    tier: int | None = None
    reserved_amount: Decimal | None = None


def allocate_pool(
    *,
    tenant_id: str,
    actor: dict[str, Any],
    resource_type: str,
    pool_amount: Decimal,
    strategy: str,
    entities: Sequence[PoolEntity],
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    tier_shares: dict[int, Decimal] | None = None,
    auto_renew: bool = True,
    renewal_strategy: str = RenewalStrategy.SAME,
) -> dict[str, Any]:
    """The pool form: split `pool_amount` over the entities and create every quota, or none.

    All or nothing, because the shares are only meaningful together: they sum to the pool.
    """
    now = clock.now()
    start, end = _period(period_start, period_end, now)
    targets = [resolve_target(tenant_id, e.allocation_type, e.allocated_to_id) for e in entities]
    seen: set[Target] = set()
    for index, target in enumerate(targets):
        if target in seen:
            raise InvalidQuota(
                "an entity appears twice in the pool",
                details={f"entities[{index}]": ["the same target appears twice"]},
            )
        seen.add(target)
    usage: dict[int, Decimal | None] = {}
    if strategy == "dynamic":
        for index, target in enumerate(targets):
            usage[index] = selectors.average_use_per_period(
                tenant_id=tenant_id,
                resource_type=resource_type,
                allocation_type=target.allocation_type,
                allocated_to_id=target.allocated_to_id,
                period_length=end - start,
                now=now,
            )
    split_entities = [
        Entity(t.allocation_type, t.allocated_to_id, e.tier, e.reserved_amount)
        for t, e in zip(targets, entities, strict=True)
    ]
    try:
        shares = split_pool(
            pool_amount, split_entities, strategy, tier_shares=tier_shares, usage=usage
        )
    except SplitError as exc:
        raise InvalidQuota(str(exc), details={exc.field: [str(exc)]}) from exc
    batch_id = uuid.uuid4()
    allocations: list[dict[str, Any]] = []
    with transaction.atomic():
        for index, (target, entity, share) in enumerate(
            zip(targets, entities, shares, strict=True)
        ):
            how: dict[str, Any] = {"type": strategy, "batch_id": str(batch_id)}
            if entity.reserved_amount is not None:
                how = {"type": "reserved", "amount": str(share), "batch_id": str(batch_id)}
            elif strategy == "priority":
                how["tier"] = entity.tier
            elif strategy == "dynamic":
                average = usage[index]
                how["average_use"] = None if average is None else str(_money(average))
            spec = QuotaSpec(
                resource_type=resource_type,
                target=target,
                allocated_amount=share,
                period_start=start,
                period_end=end,
                auto_renew=auto_renew,
                renewal_strategy=renewal_strategy,
                strategy=how,
            )
            try:
                quota = _insert_quota(
                    tenant_id, spec, created_by=actor.get("principal", ""), now=now
                )
            except QuotaOverlap as exc:
                exc.details = {**exc.details, "index": index}
                raise
            allocations.append(
                {
                    "index": index,
                    "allocation_type": target.allocation_type,
                    "allocated_to_id": target.allocated_to_id,
                    "tier": entity.tier,
                    "reserved_amount": entity.reserved_amount,
                    "allocated_amount": share,
                    "quota_id": str(quota.pk),
                }
            )
        receipt = emit_receipt(
            tenant_id=tenant_id,
            gate_id=GATE,
            inputs={
                "operation": "allocate_pool",
                "batch_id": batch_id,
                "resource_type": resource_type,
                "pool_amount": pool_amount,
                "strategy": strategy,
                "tier_shares": {str(k): v for k, v in (tier_shares or {}).items()}
                if strategy == "priority"
                else None,
                "period_start": start,
                "period_end": end,
                "entity_count": len(entities),
            },
            result={
                "batch_id": batch_id,
                "total_allocated": sum(shares, Decimal(0)),
                "items": [
                    {"index": a["index"], "id": a["quota_id"], "sha256": _item_hash(a)}
                    for a in allocations
                ],
            },
            decision_status="pass",
            rationale=f"pool split by {strategy}",
            badges=[strategy],
            policy_version_ids=[f"{a['quota_id']}@1" for a in allocations],
            actor=actor,
        )
    return {
        "batch_id": batch_id,
        "period_start": start,
        "period_end": end,
        "allocations": allocations,
        "receipt": receipt,
    }


# --- Changes --------------------------------------------------------------------------------

MUTABLE_FIELDS = (
    "allocated_amount",
    "max_burst_amount",
    "auto_renew",
    "period_end",
    "renewal_strategy",
)
IMMUTABLE_FIELDS = ("resource_type", "allocation_type", "allocated_to_id", "period_start")


def update_quota(
    *,
    tenant_id: str,
    quota_id: Any,
    actor: dict[str, Any],
    changes: dict[str, Any],
    expected_version: int | None = None,
) -> Quota:
    """`PATCH /quotas/{id}`: change what may change; the immutable fields may be sent back
    unchanged (a client that PUTs what it read) but not changed."""
    now = clock.now()
    with transaction.atomic():
        quota = selectors.live_quotas(tenant_id).select_for_update().filter(pk=quota_id).first()
        if quota is None:
            selectors.get_quota(tenant_id=tenant_id, quota_id=quota_id)  # raises the 404
            raise AssertionError("unreachable")
        changed_immutable = sorted(
            name
            for name in IMMUTABLE_FIELDS
            if name in changes and changes[name] != getattr(quota, name)
        )
        if changed_immutable:
            raise InvalidQuota(
                f"{', '.join(changed_immutable)} cannot be changed",
                details={name: ["cannot be changed"] for name in changed_immutable},
            )
        if expected_version is not None and expected_version != quota.version:
            raise QuotaVersionMismatch(
                details={"expected_version": expected_version, "current_version": quota.version}
            )
        before = quota_summary(quota)
        updates = {
            name: changes[name]
            for name in MUTABLE_FIELDS
            if name in changes and changes[name] != getattr(quota, name)
        }
        if not updates:
            return quota
        for name, value in updates.items():
            setattr(quota, name, value)
        if quota.period_end <= quota.period_start:
            raise InvalidQuota(
                "period_end must be after period_start",
                details={"period_end": ["must be after period_start"]},
            )
        if quota.used_amount > quota.capacity:
            raise QuotaBelowUsage(
                details={"used_amount": str(quota.used_amount), "capacity": str(quota.capacity)}
            )
        if "period_end" in updates:
            clash = selectors.overlapping_quota(
                tenant_id=tenant_id,
                resource_type=quota.resource_type,
                allocation_type=quota.allocation_type,
                allocated_to_id=quota.allocated_to_id,
                period_start=quota.period_start,
                period_end=quota.period_end,
                exclude_id=quota.pk,
            )
            if clash is not None:
                raise _overlap(clash.pk)
            quota.renewal_due_at = quota.period_end - renewal_lead(
                quota.period_start, quota.period_end
            )
        quota.version += 1
        quota.updated_at = now
        try:
            with transaction.atomic():
                quota.save()
        except IntegrityError as exc:
            if _is_constraint(exc, "quota_no_overlap"):
                raise _overlap(None) from exc
            if _is_constraint(exc, "quota_used_within_allocation_and_burst"):
                raise QuotaBelowUsage() from exc
            raise
        emit_receipt(
            tenant_id=tenant_id,
            gate_id=ADMIN_GATE,
            inputs={"operation": "update_quota", "quota_id": quota.pk, "changes": updates},
            result={"before": before, "after": quota_summary(quota)},
            decision_status="pass",
            rationale="quota updated",
            policy_version_ids=[_version_id(quota)],
            actor=actor,
        )
    return quota


def delete_quota(*, tenant_id: str, quota_id: Any, actor: dict[str, Any]) -> None:
    """`DELETE /quotas/{id}`: only a quota with no usage; it is kept for history."""
    now = clock.now()
    with transaction.atomic():
        quota = selectors.get_quota(tenant_id=tenant_id, quota_id=quota_id)
        deleted = Quota.objects.filter(
            pk=quota.pk, deleted_at__isnull=True, used_amount=Decimal(0)
        ).update(deleted_at=now, updated_at=now)
        if not deleted:
            quota.refresh_from_db()
            raise QuotaInUse(details={"used_amount": str(quota.used_amount)})
        emit_receipt(
            tenant_id=tenant_id,
            gate_id=ADMIN_GATE,
            inputs={"operation": "delete_quota", "quota_id": quota.pk},
            result={"deleted": True, **quota_summary(quota)},
            decision_status="pass",
            rationale="quota deleted",
            policy_version_ids=[_version_id(quota)],
            actor=actor,
        )


# --- Consumption ----------------------------------------------------------------------------


def consume(
    *,
    tenant_id: str,
    actor: dict[str, Any],
    resource_type: str,
    amount: Decimal,
    allocation_type: str | None = None,
    allocated_to_id: str | None = None,
    operation_type: str = "",
    resource_id: str = "",
    dry_run: bool = False,
) -> dict[str, Any]:
    """`POST /quotas/consume` and `/quotas/check`: admitted iff used + amount ≤ allocated +
    max_burst. A consumption decides and records in one atomic step; a dry run only reads.
    Both answer with the state after the request (as it would be, for a dry run)."""
    now = clock.now()
    target = resolve_target(tenant_id, allocation_type, allocated_to_id)
    inputs = {
        "operation": "check" if dry_run else "consume",
        "resource_type": resource_type,
        "allocation_type": target.allocation_type,
        "allocated_to_id": target.allocated_to_id,
        "amount": amount,
        "operation_type": operation_type,
        "resource_id": resource_id,
        "dry_run": dry_run,
    }
    with transaction.atomic():
        quota = selectors.current_quota(
            tenant_id=tenant_id,
            resource_type=resource_type,
            allocation_type=target.allocation_type,
            allocated_to_id=target.allocated_to_id,
            at=now,
        )
        if quota is not None and not dry_run:
            quota, allowed = _admit(quota, amount, now)
        elif quota is not None:
            allowed = quota.used_amount + amount <= quota.capacity
            if allowed:
                quota.used_amount += amount  # the state this request would leave
        else:
            allowed = True
        answer = _answer(quota, allowed)
        status = "pass"
        badges: list[str] = []
        if quota is None:
            rationale = "no quota for the target"
        elif not allowed:
            status, rationale, badges = "hard_block", "quota exhausted", ["QUOTA_EXHAUSTED"]
        elif quota.burst_used > 0:
            status, rationale, badges = "warn", "admitted into burst capacity", ["burst"]
        else:
            rationale = "within quota"
        receipt = emit_receipt(
            tenant_id=tenant_id,
            gate_id=GATE,
            inputs=inputs,
            result={k: v for k, v in answer.items() if k != "correlation_id"},
            decision_status=status,
            rationale=rationale,
            badges=badges,
            policy_version_ids=[_version_id(quota)] if quota is not None else [],
            actor=actor,
        )
        if quota is not None and allowed and not dry_run:
            QuotaUsage.objects.create(
                tenant_id=tenant_id,
                quota_id=quota.pk,
                resource_type=resource_type,
                amount=amount,
                used_after=quota.used_amount,
                operation_type=operation_type[:128],
                resource_id=resource_id[:128],
                principal=str(actor.get("principal", ""))[:255],
                receipt_id=receipt.receipt_id,
                correlation_id=(current_correlation_id() or "")[:128],
                created_at=now,
            )
            _raise_threshold_alerts(quota, now)
    DECISIONS.labels(GATE, "allowed" if allowed else "denied").inc()
    answer["receipt_id"] = str(receipt.receipt_id)
    return answer


def _admit(quota: Quota, amount: Decimal, now: datetime) -> tuple[Quota | None, bool]:
    """Decide and apply one consumption; returns the quota as it now is and the decision."""
    if connection.vendor == "postgresql":
        # The row count is the decision: concurrent consumers queue on the row lock and each
        # re-evaluates the condition against the committed value before it.
        admitted = (
            Quota.objects.filter(
                pk=quota.pk,
                deleted_at__isnull=True,
                used_amount__lte=F("allocated_amount") + F("max_burst_amount") - amount,
            ).update(used_amount=F("used_amount") + amount, updated_at=now)
            == 1
        )
        quota = Quota.objects.filter(pk=quota.pk).first()  # under our row lock when admitted
    else:
        # SQLite: the transaction began IMMEDIATE and holds the only write lock, so this read
        # and the write below are one serialized step. The comparison is made in exact Decimal
        # because SQLite would compare NUMERIC columns as doubles.
        quota = Quota.objects.filter(pk=quota.pk).first()
        admitted = (
            quota is not None
            and quota.deleted_at is None
            and quota.used_amount + amount <= quota.capacity
        )
        if admitted:
            assert quota is not None
            quota.used_amount += amount
            Quota.objects.filter(pk=quota.pk).update(used_amount=quota.used_amount, updated_at=now)
    if quota is None or quota.deleted_at is not None:
        return None, True  # deleted under us: as if there were no quota
    return quota, admitted


def _answer(quota: Quota | None, allowed: bool) -> dict[str, Any]:
    if quota is None:
        return {
            "allowed": True,
            "quota_id": None,
            "used_amount": None,
            "allocated_amount": None,
            "max_burst_amount": None,
            "remaining_amount": None,
            "burst_used": None,
            "utilization_ratio": None,
            "warning_level": None,
            "period_end": None,
            "reason": None,
            "correlation_id": current_correlation_id(),
        }
    return {
        "allowed": allowed,
        "quota_id": str(quota.pk),
        "used_amount": quota.used_amount,
        "allocated_amount": quota.allocated_amount,
        "max_burst_amount": quota.max_burst_amount,
        "remaining_amount": quota.remaining_amount,
        "burst_used": quota.burst_used,
        "utilization_ratio": _ratio(quota.used_amount, quota.allocated_amount),
        "warning_level": _warning_level(quota),
        "period_end": quota.period_end,
        "reason": None if allowed else "QUOTA_EXHAUSTED",
        "correlation_id": current_correlation_id(),
    }


def _raise_threshold_alerts(quota: Quota, now: datetime) -> None:
    """80 % and 90 % warnings and `quota_exhausted`, each once per quota (= per period): the
    conditional UPDATE of the marker decides who raises it."""
    ratio = quota.used_amount / quota.allocated_amount
    period_key = quota.period_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    for threshold, marker, percent in WARNING_THRESHOLDS:
        if ratio < threshold or getattr(quota, marker) is not None:
            continue
        if not Quota.objects.filter(pk=quota.pk, **{f"{marker}__isnull": True}).update(
            **{marker: now}
        ):
            continue
        raise_alert(
            tenant_id=quota.tenant_id,
            alert_type="quota_threshold_warning",
            severity="warning",
            title=f"Quota for {quota.resource_type} is at {percent} %",
            message=(
                f"{quota.allocation_type} {quota.allocated_to_id} has used {quota.used_amount} "
                f"of {quota.allocated_amount} {quota.resource_type} this period."
            ),
            resource_id=str(quota.pk),
            dedup_key=f"{period_key}:{percent}",
            details={
                "threshold": percent,
                "used_amount": quota.used_amount,
                "allocated_amount": quota.allocated_amount,
                "utilization_ratio": _ratio(quota.used_amount, quota.allocated_amount),
                "period_end": quota.period_end,
            },
        )
    if quota.used_amount < quota.capacity or quota.exhausted_at is not None:
        return
    if not Quota.objects.filter(pk=quota.pk, exhausted_at__isnull=True).update(exhausted_at=now):
        return
    payload = {
        "quota_id": quota.pk,
        "resource_type": quota.resource_type,
        "used_amount": quota.used_amount,
        "allocated_amount": quota.allocated_amount,
        "max_burst_amount": quota.max_burst_amount,
        "period_end": quota.period_end,
    }
    publish_event(tenant_id=quota.tenant_id, event_type="quota_exhausted", payload=payload)
    raise_alert(
        tenant_id=quota.tenant_id,
        alert_type="quota_exhausted",
        severity="critical",
        title=f"Quota for {quota.resource_type} is exhausted",
        message=(
            f"{quota.allocation_type} {quota.allocated_to_id} has used all of its "
            f"{quota.resource_type} quota, burst included, "
            f"until {quota.period_end:%Y-%m-%d %H:%M}Z."
        ),
        resource_id=str(quota.pk),
        dedup_key=f"{period_key}:exhausted",
        details=payload,
    )


# --- Renewal --------------------------------------------------------------------------------


def renewal_amount(quota: Quota, now: datetime) -> tuple[Decimal, dict[str, Any]]:
    """The successor's amount and how it was found.

    `same`: the same amount. `usage_based`: 1.2 * the use projected over the whole period from
    what was observed (at least half the period; otherwise the same amount), whole units.
    """
    if quota.renewal_strategy != RenewalStrategy.USAGE_BASED:
        return quota.allocated_amount, {"basis": "same"}
    observed_from = max(quota.period_start, quota.created_at)
    observed_to = min(now, quota.period_end)
    observed = Decimal(int(max((observed_to - observed_from).total_seconds(), 0)))
    length = Decimal(int(quota.duration.total_seconds()))
    if length <= 0 or observed < length * MIN_OBSERVED_SHARE:
        return quota.allocated_amount, {"basis": "same", "why": "too little of the period seen"}
    projected = quota.used_amount * length / observed
    amount = whole_units_up(DYNAMIC_HEADROOM * projected)
    return amount, {"basis": "usage", "projected_use": _money(projected)}


def renew_quota(
    *,
    quota_id: Any,
    actor: dict[str, Any],
    force: bool = False,
    now: datetime | None = None,
) -> Quota | None:
    """Create the successor of one quota, exactly once: the conditional UPDATE that sets
    `renewed_to` is the claim (two runs at once: one wins, the other finds it claimed), and the
    unique `renewed_from` stands behind it. Returns the successor, or None when there was
    nothing to do. `force` (the admin's "renew now") skips the due time and `auto_renew`.

    A failure is counted on the quota (its own transaction); the third raises an alert.
    """
    now = now or clock.now()
    successor_id = uuid.uuid4()
    try:
        with transaction.atomic():
            claim = Quota.objects.filter(
                pk=quota_id, renewed_to__isnull=True, deleted_at__isnull=True
            )
            if not force:
                claim = claim.filter(auto_renew=True, renewal_due_at__lte=now)
            if not claim.update(renewed_to=successor_id, updated_at=now):
                return None
            quota = Quota.objects.get(pk=quota_id)
            amount, basis = renewal_amount(quota, now)
            spec = QuotaSpec(
                resource_type=quota.resource_type,
                target=Target(quota.allocation_type, quota.allocated_to_id),
                allocated_amount=amount,
                period_start=quota.period_end,
                period_end=quota.period_end + quota.duration,
                max_burst_amount=quota.max_burst_amount,
                auto_renew=quota.auto_renew,
                renewal_strategy=quota.renewal_strategy,
                strategy=quota.strategy,
                renewed_from=quota.pk,
            )
            successor = _insert_quota(
                quota.tenant_id,
                spec,
                created_by=actor.get("principal", ""),
                now=now,
                quota_id=successor_id,
            )
            if amount < quota.allocated_amount:
                publish_event(
                    tenant_id=quota.tenant_id,
                    event_type="resource_usage_optimized",
                    payload={
                        "quota_id": successor.pk,
                        "renewed_from": quota.pk,
                        "resource_type": quota.resource_type,
                        "previous_amount": quota.allocated_amount,
                        "new_amount": amount,
                        "estimated_savings": quota.allocated_amount - amount,
                    },
                )
            emit_receipt(
                tenant_id=quota.tenant_id,
                gate_id=GATE,
                inputs={
                    "operation": "renew",
                    "renewed_from": quota.pk,
                    "renewal_strategy": quota.renewal_strategy,
                    "previous_amount": quota.allocated_amount,
                    "used_amount": quota.used_amount,
                    "forced": force,
                    **basis,
                },
                result=quota_summary(successor),
                decision_status="pass",
                rationale="quota renewed",
                badges=[quota.renewal_strategy],
                policy_version_ids=[_version_id(quota), _version_id(successor)],
                actor=actor,
            )
    except Exception as exc:
        _record_renewal_failure(quota_id, exc, now)
        raise
    logger.info(
        "quota.renewed", extra={"quota_id": str(quota_id), "successor_id": str(successor.pk)}
    )
    return successor


def _record_renewal_failure(quota_id: Any, exc: Exception, now: datetime) -> None:
    message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:500]
    logger.warning("quota.renewal_failed", extra={"quota_id": str(quota_id)}, exc_info=exc)
    with transaction.atomic():
        counted = Quota.objects.filter(pk=quota_id, renewed_to__isnull=True).update(
            renewal_attempts=F("renewal_attempts") + 1, renewal_last_error=message
        )
        if not counted:
            return
        quota = Quota.objects.get(pk=quota_id)
        if quota.renewal_attempts < RENEWAL_FAILURES_BEFORE_ALERT:
            return
        raise_alert(
            tenant_id=quota.tenant_id,
            alert_type="renewal_failed",
            severity="critical",
            title=f"Quota for {quota.resource_type} could not be renewed",
            message=f"{quota.renewal_attempts} attempts failed; the last: {message}",
            resource_id=str(quota.pk),
            dedup_key=quota.period_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            details={
                "attempts": quota.renewal_attempts,
                "error": message,
                "period_end": quota.period_end,
                "at": now,
            },
        )


def renew_due(*, now: datetime | None = None, limit: int = MAX_RENEWALS_PER_RUN) -> dict[str, int]:
    """The scheduled job: renew every quota that is due. A successor that is itself already
    due (the job was down for several periods) is renewed in the same run, so each missed
    period is created once, one after the other."""
    now = now or clock.now()
    actor = system_actor("quotas.renew_due")
    renewed = 0
    failed: set[Any] = set()
    skipped: set[Any] = set()  # renewed by a concurrent run: never looked at twice
    while renewed + len(failed) < limit:
        due = selectors.quotas_due_for_renewal(now=now, exclude=failed | skipped, limit=100)
        if not due:
            break
        for quota_id in due:
            try:
                if renew_quota(quota_id=quota_id, actor=actor, now=now) is not None:
                    renewed += 1
                else:
                    skipped.add(quota_id)
            except Exception:  # counted and alerted by renew_quota; the others still renew
                failed.add(quota_id)
    return {"renewed": renewed, "failed": len(failed)}


# --- Reconciliation -------------------------------------------------------------------------


def reconcile(*, now: datetime | None = None) -> dict[str, Any]:
    """Compare every recent quota's `used_amount` with the sum of its usage history. The drift
    is a metric and an alert per drifting quota; nothing is rewritten (a drift is a bug to
    look at, and the counter is what admitted traffic)."""
    now = now or clock.now()
    checked = 0
    drifted: list[dict[str, Any]] = []
    total = Decimal(0)
    for quota in selectors.usage_ledger_totals(since=now - RECONCILE_WINDOW).iterator():
        checked += 1
        ledger = _money(Decimal(quota.ledger_amount))
        drift = _money(quota.used_amount) - ledger
        if drift == 0:
            continue
        total += abs(drift)
        drifted.append({"quota_id": str(quota.pk), "drift": drift})
        with transaction.atomic():
            raise_alert(
                tenant_id=quota.tenant_id,
                alert_type="reconciliation_drift",
                severity="warning",
                title=f"Quota usage of {quota.resource_type} drifted from its history",
                message=(f"used_amount {quota.used_amount} but the usage history sums to {ledger}"),
                resource_id=str(quota.pk),
                dedup_key="quota_usage",
                details={
                    "ledger": "quota_usage",
                    "used_amount": quota.used_amount,
                    "ledger_amount": ledger,
                    "drift": drift,
                },
            )
    RECONCILIATION_DRIFT.labels("quota_usage").set(float(total))
    if drifted:
        logger.warning("quota.reconciliation_drift", extra={"count": len(drifted)})
    return {"checked": checked, "drifted": drifted, "total_drift": total}


def default_tier_shares() -> dict[int, Decimal]:
    return dict(DEFAULT_TIER_SHARES)
