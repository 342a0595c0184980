"""The budget check (SPEC 2.3): single and batch, decided and held in one atomic step.

Flow of a check (a batch is the same with several items, all-or-nothing):
1. Outside the transaction: the lazy expiry of overdue holds, the applicable budgets (cached
   per process on PostgreSQL, see `_applicable`), each one's current period and the cost in
   its currency (FX).
2. One transaction (`atomic_with_retry`): find (create when missing) and lock the period rows
   in id order — on PostgreSQL one statement that also proves the cached definitions current —
   evaluate every item against the locked values with a running tally (hard_stop → escalate →
   throttle/soft_limit), then either hold everything or hold nothing (pending approvals for
   escalations). Holding: approvals consumed, the answer and its signed receipt built, then
   one statement (guarded UPDATE, reservations, hold lines and the receipt as CTEs, the
   definitions' fingerprint again), then threshold crossings. Every
   write of the check is in this transaction. docs/budgets-performance.md tells why.
"""

import functools
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings

from approvals import selectors as approval_selectors
from approvals import services as approval_services
from approvals.models import Kind
from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.metrics import BUDGET_CHECK_DURATION, DECISIONS, HOLDS
from budgeting_site.platform.principal import Principal
from budgets import fx
from budgets.exceptions import BudgetBusy
from budgets.models import (
    LEVEL_RANK,
    Budget,
    BudgetPeriod,
    Enforcement,
    HoldLine,
    Reservation,
)
from budgets.periods import Period
from budgets.services import _applicable
from budgets.services._db import CounterChange, Retry, hold
from budgets.services._db import atomic_with_retry as _atomic_with_retry
from budgets.services._periods import period_of, rows_for_keys, rows_with_fingerprint
from budgets.services.holds import expire_overdue
from budgets.services.signals import crossings_for, emit_crossings
from budgets.utilization import (
    ZERO,
    clamped_ratio,
    percent_of,
    throttle_factor_for,
)

logger = logging.getLogger(__name__)

BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
COST_CALCULATION_ERROR = "COST_CALCULATION_ERROR"
BUDGET_NO_MATCH = "BUDGET_NO_MATCH"
BATCH_NOT_ADMITTED = "BATCH_NOT_ADMITTED"
MAX_BATCH = 500
CONTEXT_TARGETS = (("project_id", "project"), ("user_id", "user"), ("feature_id", "feature"))
_STATUS_RANK = {"pass": 0, "warn": 1, "soft_block": 2, "hard_block": 3}


@dataclass(frozen=True)
class CheckInput:
    estimated_cost: Decimal
    resource_type: str = ""
    currency: str = ""
    allocated_to_type: str = ""
    allocated_to_id: str = ""
    operation_context: dict[str, Any] = field(default_factory=dict)
    approval_id: uuid.UUID | None = None
    hold_ttl_seconds: int = 900

    def targets(self) -> set[tuple[str, str]]:
        pairs = set()
        if self.allocated_to_type and self.allocated_to_id:
            pairs.add((self.allocated_to_type, self.allocated_to_id))
        for key, kind in CONTEXT_TARGETS:
            value = self.operation_context.get(key)
            if value not in (None, ""):
                pairs.add((kind, str(value)))
        return pairs

    def receipt_inputs(self) -> dict[str, Any]:
        # Ids and aggregates only: the context's allocation ids, never its other keys.
        context = {
            key: str(self.operation_context[key])
            for key, _ in CONTEXT_TARGETS
            if self.operation_context.get(key) not in (None, "")
        }
        return {
            "resource_type": self.resource_type,
            "estimated_cost": self.estimated_cost,
            "currency": self.currency or None,
            "allocated_to_type": self.allocated_to_type or None,
            "allocated_to_id": self.allocated_to_id or None,
            "operation_context": context,
            "approval_id": self.approval_id,
            "hold_ttl_seconds": self.hold_ttl_seconds,
        }


@dataclass
class Line:
    """One applicable budget as evaluated for one item."""

    budget: Budget
    span: Period
    cost: Decimal
    period: BudgetPeriod | None = None
    spent: Decimal = ZERO
    reserved: Decimal = ZERO
    amount: Decimal = ZERO
    approval_id: uuid.UUID | None = None
    compare_remaining: Decimal | None = None

    @property
    def key(self) -> tuple[Any, datetime]:
        return (self.budget.pk, self.span.start)

    @property
    def row(self) -> BudgetPeriod:
        assert self.period is not None
        return self.period

    @property
    def projected(self) -> Decimal:
        return self.spent + self.reserved + self.cost

    @property
    def over(self) -> bool:
        return self.projected > self.amount

    @property
    def action(self) -> str:
        return self.budget.enforcement_action


@dataclass
class ItemEval:
    item: CheckInput
    lines: list[Line]
    error: str = ""
    error_budget: Budget | None = None
    allowed: bool = False
    reason: str | None = None
    message: str = ""
    decisive: Line | None = None
    uncovered: list[Line] = field(default_factory=list)
    covered: Line | None = None
    throttle_factor: Decimal | None = None
    status: str = "pass"
    not_admitted: bool = False
    reservation_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    approval_id: uuid.UUID | None = None


# --- Public entry points --------------------------------------------------------------------


def check_budget(
    *, tenant_id: str, check: CheckInput, principal: Principal, dry_run: bool = False
) -> dict[str, Any]:
    """One check; returns the response body of SPEC 2.3 (always a decision)."""
    answer = _run(tenant_id=tenant_id, items=[check], principal=principal, dry_run=dry_run)
    return answer["results"][0]


def check_budget_batch(
    *, tenant_id: str, checks: list[CheckInput], principal: Principal, dry_run: bool = False
) -> dict[str, Any]:
    """All-or-nothing: every item allowed and held, or nothing held. One receipt."""
    answer = _run(tenant_id=tenant_id, items=checks, principal=principal, dry_run=dry_run)
    return {
        "allowed": answer["allowed"],
        "results": answer["results"],
        "receipt_id": answer["receipt_id"],
        "correlation_id": current_correlation_id(),
    }


# --- The engine -----------------------------------------------------------------------------


#: How often a check reads the definitions again after its locking statement found them
#: changed (`_applicable`), before it answers 503 retriable.
MAX_DEFINITION_READS = 5


def _run(
    *, tenant_id: str, items: list[CheckInput], principal: Principal, dry_run: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    at = clock.now()
    batch = len(items) > 1
    targets: set[tuple[str, str]] = set()
    for item in items:
        targets |= item.targets()
    # Holds past their time are settled before they are counted (SPEC 2.4, lazily).
    if not dry_run and _lazy_expiry_due(tenant_id, at):
        release = settings.BUDGET_HOLD_EXPIRY == "release"
        expire_overdue(tenant_id=tenant_id, at=at, limit=20 if release else 3)
    for attempt in range(MAX_DEFINITION_READS):
        definitions = _applicable.applicable(
            tenant_id=tenant_id, at=at, targets=targets, fresh=attempt > 0
        )
        evals = _prepare(tenant_id, items, at, definitions.budgets)
        fingerprint = (
            _applicable.fingerprint_sql(tenant_id, at, targets)
            if definitions.fingerprint is not None
            else None
        )
        decide = functools.partial(
            _decide,
            tenant_id,
            evals,
            principal,
            at,
            dry_run=dry_run,
            batch=batch,
            fingerprint=fingerprint,
            expected=definitions.fingerprint,
        )
        try:
            answer = decide() if dry_run else _atomic_with_retry(decide)
            break
        except _applicable.DefinitionsChanged:
            continue
    else:
        raise BudgetBusy(retriable=True, details={"definition_reads": MAX_DEFINITION_READS})
    BUDGET_CHECK_DURATION.observe(time.perf_counter() - started)
    for ev in evals:
        DECISIONS.labels("budget-check", _outcome_label(ev)).inc()
    return answer


#: Per tenant, when this process last looked for overdue holds during a check.
_last_lazy_expiry: dict[str, datetime] = {}
LAZY_EXPIRY_EVERY = timedelta(seconds=1)


def _lazy_expiry_due(tenant_id: str, at: datetime) -> bool:
    """Whether this check should look for overdue holds. Committing an expired hold at its
    estimate moves it from reserved to spent and leaves spent + reserved unchanged, so in the
    default `commit` mode a check's decision does not depend on it: the look is made at most
    once a second per tenant and process, and expires at most 3 (the sweep runs every 30 s
    and takes the rest). In `release` mode an overdue hold frees capacity, so every check
    looks (up to 20)."""
    if settings.BUDGET_HOLD_EXPIRY == "release":
        return True
    last = _last_lazy_expiry.get(tenant_id)
    if last is not None and last <= at < last + LAZY_EXPIRY_EVERY:
        return False
    _last_lazy_expiry[tenant_id] = at
    return True


def _prepare(
    tenant_id: str, items: list[CheckInput], at: datetime, budgets: tuple[Budget, ...]
) -> list[ItemEval]:
    period_by_budget = {}
    for budget in budgets:
        period = period_of(budget, at)
        if period is not None:
            period_by_budget[budget.pk] = period
    missing_rate = fx.missing_rate_error()
    evals = []
    for item in items:
        wanted = item.targets()
        ev = ItemEval(item=item, lines=[])
        for budget in budgets:
            if budget.pk not in period_by_budget:
                continue
            if budget.allocated_to_type != "tenant" and (
                (budget.allocated_to_type, budget.allocated_to_id) not in wanted
            ):
                continue
            try:
                cost = fx.convert(
                    item.estimated_cost, item.currency, budget.currency, at, tenant_id=tenant_id
                )
            except missing_rate as exc:
                ev.error = COST_CALCULATION_ERROR
                ev.error_budget = budget
                ev.message = str(exc)
                break
            ev.lines.append(Line(budget=budget, span=period_by_budget[budget.pk], cost=cost))
        ev.lines.sort(key=lambda line: (LEVEL_RANK[line.budget.allocated_to_type], line.budget.pk))
        evals.append(ev)
    return evals


def _decide(
    tenant_id: str,
    evals: list[ItemEval],
    principal: Principal,
    at: datetime,
    *,
    dry_run: bool,
    batch: bool,
    fingerprint: tuple[str, list[object]] | None = None,
    expected: str | None = None,
) -> dict[str, Any]:
    pairs = {line.key: (line.budget, line.span) for ev in evals for line in ev.lines}
    # Found (or created) and locked in id order inside this transaction; a dry run only reads.
    if fingerprint is not None and expected is not None:
        # Cached definitions (PostgreSQL): the locking statement proves them current.
        rows = rows_with_fingerprint(
            pairs.values(), fingerprint, expected, lock=not dry_run, create=not dry_run
        )
    else:
        rows = rows_for_keys(pairs.values(), lock=not dry_run, create=not dry_run)
    # spent, reserved, amount per period: the running tally of this batch.
    state = {key: [r.spent_amount, r.reserved_amount, r.budget_amount] for key, r in rows.items()}
    for ev in evals:
        _reset(ev)
        for line in ev.lines:
            line.period = rows[line.key]
        _evaluate(ev, state, principal, at, tenant_id)
    admitted = all(ev.allowed for ev in evals)
    if not admitted:
        for ev in evals:
            if ev.allowed:
                _not_admitted(ev)
    plan = None
    if not dry_run:
        if admitted:
            plan = _plan_holds(tenant_id, evals, principal, at)
        else:
            _request_approvals(tenant_id, evals, principal, at)
    answer, receipt = _answer(
        tenant_id, evals, principal, at, admitted=admitted, dry_run=dry_run, batch=batch
    )
    if plan is None:
        receipt.save(force_insert=True)
        return answer
    # The receipt is built and signed first and inserted by the holds' statement, so the
    # locked rows wait for one round trip and no ORM save.
    seen = hold(
        plan.changes.values(),
        plan.reservations,
        plan.lines,
        fingerprint=fingerprint,
        also=[receipt],
    )
    if fingerprint is not None and seen != expected:
        # A budget changed while this check waited for its row locks (the write's snapshot is
        # taken after the locks are held): everything rolls back and the check runs again.
        raise _applicable.DefinitionsChanged()
    emit_crossings(plan.crossings, at=at)
    HOLDS.labels("created").inc(len(plan.reservations))
    return answer


def _reset(ev: ItemEval) -> None:
    # A retried transaction evaluates again from scratch.
    if ev.error:
        return
    ev.allowed, ev.reason, ev.message, ev.decisive = False, None, "", None
    ev.uncovered, ev.covered, ev.throttle_factor, ev.status = [], None, None, "pass"
    ev.not_admitted, ev.reservation_id, ev.expires_at, ev.approval_id = False, None, None, None
    for line in ev.lines:
        line.approval_id = None


def _evaluate(
    ev: ItemEval, state: dict[Any, list[Decimal]], principal: Principal, at: datetime, tenant: str
) -> None:
    if ev.error:
        ev.allowed, ev.reason, ev.status = False, ev.error, "hard_block"
        return
    for line in ev.lines:
        line.spent, line.reserved, line.amount = state[line.key]
        line.compare_remaining = None
    if not ev.lines:
        if settings.BUDGET_NO_MATCH == "deny":
            ev.allowed, ev.reason, ev.status = False, BUDGET_NO_MATCH, "hard_block"
            ev.message = "No budget applies and BUDGET_NO_MATCH is deny"
        else:
            ev.allowed, ev.message = True, "No budget applies"
        return
    item = ev.item
    hard_over = [ln for ln in ev.lines if ln.action == Enforcement.HARD_STOP and ln.over]
    if hard_over:
        ev.decisive = _most_restrictive(hard_over, item, at, tenant)
        ev.allowed, ev.reason, ev.status = False, BUDGET_EXCEEDED, "hard_block"
        ev.message = (
            f"Denied: the estimated cost would take hard_stop budget "
            f"{ev.decisive.budget.budget_name} past its amount"
        )
        return
    escalate_over = [ln for ln in ev.lines if ln.action == Enforcement.ESCALATE and ln.over]
    for line in escalate_over:
        if ev.covered is None and item.approval_id and _covers(item, line, principal, at, tenant):
            ev.covered = line
            line.approval_id = item.approval_id
        else:
            ev.uncovered.append(line)
    if ev.uncovered:
        ev.decisive = _most_restrictive(ev.uncovered, item, at, tenant)
        ev.allowed, ev.reason, ev.status = False, BUDGET_EXCEEDED, "soft_block"
        ev.message = (
            f"Approval required: the estimated cost would take escalate budget "
            f"{ev.decisive.budget.budget_name} past its amount"
        )
        return
    ev.allowed = True
    ev.decisive = _most_restrictive(ev.lines, item, at, tenant)
    factors = [
        f
        for ln in ev.lines
        if ln.action == Enforcement.THROTTLE
        and (f := throttle_factor_for(ln.projected, ln.amount)) is not None
    ]
    ev.throttle_factor = min(factors) if factors else None
    over = [ln for ln in ev.lines if ln.over]
    if over:
        ev.status = "warn"
        names = ", ".join(f"{ln.budget.budget_name} ({ln.action})" for ln in over)
        ev.message = f"Allowed over budget: {names}"
        if ev.covered is not None:
            ev.approval_id = item.approval_id
    elif ev.throttle_factor is not None:
        ev.message = f"Allowed; throttled to factor {ev.throttle_factor}"
    else:
        ev.message = "Allowed within budget"
    for line in ev.lines:
        state[line.key][1] += line.cost


def _covers(
    item: CheckInput, line: Line, principal: Principal, at: datetime, tenant_id: str
) -> bool:
    assert item.approval_id is not None
    return approval_selectors.approval_covers(
        tenant_id=tenant_id,
        approval_id=item.approval_id,
        requested_by=principal.principal,
        amount=item.estimated_cost,
        budget_id=line.budget.pk,
        at=at,
    )


def _most_restrictive(lines: list[Line], item: CheckInput, at: datetime, tenant_id: str) -> Line:
    """Least remaining after this request; ties to feature > user > project > tenant."""

    def remaining(line: Line) -> Decimal:
        if line.compare_remaining is None:
            value = line.amount - line.projected
            if item.currency and line.budget.currency != item.currency:
                try:
                    value = fx.convert(
                        value, line.budget.currency, item.currency, at, tenant_id=tenant_id
                    )
                except fx.missing_rate_error():
                    pass
            line.compare_remaining = value
        return line.compare_remaining

    return min(
        lines,
        key=lambda ln: (remaining(ln), LEVEL_RANK[ln.budget.allocated_to_type], str(ln.budget.pk)),
    )


def _not_admitted(ev: ItemEval) -> None:
    ev.allowed = False
    ev.not_admitted = True
    ev.reason = BATCH_NOT_ADMITTED
    ev.message = "Not held: another check of the batch was denied, so nothing was held"
    ev.status = "hard_block"
    ev.approval_id = None
    ev.throttle_factor = None


@dataclass
class HoldPlan:
    """What an admitted check writes: counter changes (with their threshold bits), the
    reservations and their hold lines, and the threshold crossings to announce."""

    changes: dict[Any, CounterChange]
    reservations: list[Reservation]
    lines: list[HoldLine]
    crossings: list[Any]


def _plan_holds(
    tenant_id: str, evals: list[ItemEval], principal: Principal, at: datetime
) -> HoldPlan | None:
    """The holds of an admitted check (approvals it uses are consumed here); None when there
    is nothing to hold (no budget applies)."""
    changes: dict[Any, CounterChange] = {}
    reservations = []
    hold_lines = []
    for ev in evals:
        if not ev.lines:
            continue
        item = ev.item
        reservation_id = uuid.uuid4()
        if ev.covered is not None:
            assert item.approval_id is not None
            won = approval_services.consume_approval(
                tenant_id=tenant_id,
                approval_id=item.approval_id,
                requested_by=principal.principal,
                amount=item.estimated_cost,
                budget_id=ev.covered.budget.pk,
                consumed_by=str(reservation_id),
                at=at,
            )
            if not won:
                # A concurrent check consumed it first: evaluate again without it.
                raise Retry()
        expires_at = at + timedelta(seconds=item.hold_ttl_seconds)
        reservations.append(
            Reservation(
                id=reservation_id,
                tenant_id=tenant_id,
                resource_type=item.resource_type[:128],
                estimated_cost=item.estimated_cost,
                currency=item.currency,
                requested_by=principal.principal[:255],
                approval_id=item.approval_id if ev.covered is not None else None,
                created_at=at,
                expires_at=expires_at,
            )
        )
        for line in ev.lines:
            hold_lines.append(
                HoldLine(
                    tenant_id=tenant_id,
                    reservation_id=reservation_id,
                    budget_id=line.budget.pk,
                    period_id=line.row.pk,
                    amount=line.cost,
                )
            )
            change = changes.setdefault(line.row.pk, CounterChange(period=line.row))
            change.reserved_delta += line.cost
            if line.action == Enforcement.HARD_STOP:
                change.guard = True
        ev.reservation_id, ev.expires_at = reservation_id, expires_at
    if not reservations:
        return None
    budgets = {line.row.pk: line.budget for ev in evals for line in ev.lines}
    crossings = []
    for pk, change in changes.items():
        crossings.extend(crossings_for(budgets[pk], change))
    return HoldPlan(changes, reservations, hold_lines, crossings)


def _request_approvals(
    tenant_id: str, evals: list[ItemEval], principal: Principal, at: datetime
) -> None:
    for ev in evals:
        for line in ev.uncovered:
            approval, _ = approval_services.request_approval(
                tenant_id=tenant_id,
                kind=Kind.BUDGET_OVERRUN,
                requested_by=principal.principal,
                requested_amount=ev.item.estimated_cost,
                currency=ev.item.currency or line.budget.currency,
                budget_id=line.budget.pk,
                period_start=line.span.start,
                timeout_hours=line.budget.approval_timeout_hours,
                details={
                    "resource_type": ev.item.resource_type,
                    "budget_amount": str(line.amount),
                    "spent_amount": str(line.spent),
                    "reserved_amount": str(line.reserved),
                    "projected_amount": str(line.projected),
                    "budget_currency": line.budget.currency,
                },
                at=at,
            )
            line.approval_id = approval.pk
        if ev.decisive is not None and ev.uncovered:
            ev.approval_id = ev.decisive.approval_id


# --- The answer and its receipt -------------------------------------------------------------


def _line_view(line: Line, held: bool) -> dict[str, Any]:
    after = line.projected if held else line.spent + line.reserved
    return {
        "budget_id": line.budget.pk,
        "budget_name": line.budget.budget_name,
        "allocated_to_type": line.budget.allocated_to_type,
        "allocated_to_id": line.budget.allocated_to_id,
        "currency": line.budget.currency,
        "remaining_budget": max(line.amount - after, ZERO),
        "utilization_ratio": clamped_ratio(line.projected, line.amount),
        "utilization_percent": percent_of(line.projected, line.amount),
        "enforcement_action": line.action,
        "over": line.over,
        "approval_id": line.approval_id,
    }


def _item_result(ev: ItemEval) -> dict[str, Any]:
    held = ev.reservation_id is not None
    decisive = ev.decisive
    if decisive is None and ev.error_budget is not None:
        budget_id: Any = ev.error_budget.pk
        action: Any = ev.error_budget.enforcement_action
    else:
        budget_id = decisive.budget.pk if decisive else None
        action = decisive.action if decisive else None
    view = _line_view(decisive, held) if decisive else None
    return {
        "allowed": ev.allowed,
        "budget_id": budget_id,
        "remaining_budget": view["remaining_budget"] if view else None,
        "utilization_ratio": view["utilization_ratio"] if view else None,
        "utilization_percent": view["utilization_percent"] if view else None,
        "enforcement_action": action,
        "reason": ev.reason,
        "message": ev.message,
        "reservation_id": ev.reservation_id,
        "reservation_expires_at": ev.expires_at,
        "requires_approval": bool(ev.uncovered) and not ev.not_admitted,
        "approval_id": ev.approval_id,
        "throttle_factor": ev.throttle_factor,
        "applied_budgets": [_line_view(line, held) for line in ev.lines],
    }


def _answer(
    tenant_id: str,
    evals: list[ItemEval],
    principal: Principal,
    at: datetime,
    *,
    admitted: bool,
    dry_run: bool,
    batch: bool,
) -> tuple[dict[str, Any], Any]:
    """The answer and its signed receipt, not stored yet (the caller writes it)."""
    from receipts.canonical import canonical_bytes, to_jsonable
    from receipts.services import ReceiptDraft, sign_receipt

    results = []
    for ev in evals:
        result = _item_result(ev)
        result["dry_run"] = dry_run
        results.append(result)
    versions = sorted({f"{ln.budget.pk}@{ln.budget.version}" for ev in evals for ln in ev.lines})
    status = max((ev.status for ev in evals), key=_STATUS_RANK.__getitem__, default="pass")
    badges = sorted({ln.action for ev in evals for ln in ev.lines if ln.over})
    if dry_run:
        badges.append("dry_run")
    if batch:
        items = []
        for index, (ev, result) in enumerate(zip(evals, results, strict=True)):
            canonical = canonical_bytes(
                to_jsonable({"inputs": ev.item.receipt_inputs(), "result": result})
            )
            items.append(
                {
                    "index": index,
                    "id": ev.reservation_id,
                    "allowed": result["allowed"],
                    "budget_id": result["budget_id"],
                    "sha256": hashlib.sha256(canonical).hexdigest(),
                }
            )
        inputs: dict[str, Any] = {"count": len(evals), "dry_run": dry_run}
        receipt_result: dict[str, Any] = {"allowed": admitted, "items": items}
        rationale = "batch admitted" if admitted else "batch not admitted"
    else:
        ev, result = evals[0], results[0]
        inputs = {**ev.item.receipt_inputs(), "dry_run": dry_run}
        receipt_result = {
            key: result[key]
            for key in (
                "allowed",
                "budget_id",
                "remaining_budget",
                "utilization_percent",
                "enforcement_action",
                "reason",
                "reservation_id",
                "requires_approval",
                "approval_id",
                "throttle_factor",
            )
        }
        receipt_result["applied_budgets"] = [
            {
                "budget_id": view["budget_id"],
                "remaining_budget": view["remaining_budget"],
                "utilization_percent": view["utilization_percent"],
                "over": view["over"],
            }
            for view in result["applied_budgets"]
        ]
        rationale = ev.message
    receipt = sign_receipt(
        ReceiptDraft(
            tenant_id=tenant_id,
            gate_id="budget-check",
            inputs=inputs,
            result=receipt_result,
            decision_status=status,
            rationale=rationale,
            badges=badges,
            policy_version_ids=versions,
            actor=principal.actor,
            degraded=False,
            timestamp_utc=at,
        )
    )
    correlation_id = current_correlation_id()
    for result in results:
        result["receipt_id"] = receipt.receipt_id
        result["correlation_id"] = correlation_id
    return {"allowed": admitted, "results": results, "receipt_id": receipt.receipt_id}, receipt


def _outcome_label(ev: ItemEval) -> str:
    if ev.allowed:
        return "allowed"
    if ev.uncovered and not ev.not_admitted:
        return "escalated"
    return "denied"
