"""What a manager sees beside a request: the budget's utilization, forecast and recent
spending, or the policy's recent use. Read through the owning apps' selectors; a selector
that is missing or fails leaves its part of the context out (logged), never the page."""

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from approvals.models import ApprovalRequest, Kind
from budgeting_site.platform import clock
from budgeting_site.platform.errors import DomainError

CENT = Decimal("0.01")

logger = logging.getLogger(__name__)

# kind → function(approval) -> dict for the template. Filled below from the apps' selectors.
_CONTEXT: dict[str, Callable[[ApprovalRequest], dict[str, Any]]] = {}


def register(kind: str, fn: Callable[[ApprovalRequest], dict[str, Any]]) -> None:
    _CONTEXT[kind] = fn


def context_for(approval: ApprovalRequest) -> dict[str, Any]:
    fn = _CONTEXT.get(approval.kind)
    if fn is None:
        return {}
    try:
        return fn(approval)
    except Exception:
        logger.exception(
            "approvals.page_context_failed",
            extra={"approval_id": str(approval.pk), "kind": approval.kind},
        )
        return {"unavailable": True}


RECENT_DAYS = 7


def _pct(used: Decimal, amount: Decimal) -> Decimal:
    if amount <= 0:
        return Decimal(0)
    return (used * 100 / amount).quantize(Decimal("0.1"))


def _budget_context(approval: ApprovalRequest) -> dict[str, Any]:
    from budgets import selectors as budgets

    now = clock.now()
    try:
        budget = budgets.get_budget(tenant_id=approval.tenant_id, budget_id=approval.budget_id)
    except DomainError:
        return {"gone": "The budget no longer exists."}
    period = budgets.current_periods([budget], now).get(budget.pk)
    if period is None:
        return {"gone": "The budget is not active now."}
    amount = Decimal(period["budget_amount"])
    spent = Decimal(period["spent_amount"])
    reserved = Decimal(period["reserved_amount"])
    forecast = Decimal(period.get("forecast_amount") or spent)
    used_pct = _pct(spent + reserved, amount)
    context: dict[str, Any] = {
        "budget": {
            "name": budget.budget_name,
            "enforcement_action": budget.enforcement_action,
            "allocated_to_type": budget.allocated_to_type,
            "allocated_to_id": budget.allocated_to_id,
            "period_start": period["period_start"],
            "period_end": period["period_end"],
            "amount": amount.normalize(),
            "spent": spent.quantize(CENT),
            "reserved": reserved.quantize(CENT),
            "currency": budget.currency,
            "utilization_pct": used_pct,
            "utilization_bar": min(max(used_pct, Decimal(0)), Decimal(100)),
            "forecast": forecast.quantize(CENT),
            "forecast_pct": _pct(forecast, amount),
            "projected_pct": _pct(spent + reserved + approval.requested_amount, amount),
        }
    }
    # The budget's own spending ledger by day (budgets.selectors.daily_spending), when the
    # budgets app provides it.
    daily = getattr(budgets, "daily_spending", None)
    if daily is not None:
        start = (now - timedelta(days=RECENT_DAYS - 1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        context["recent_spending"] = [
            {"day": day, "amount": Decimal(amount).quantize(CENT)}
            for day, amount in daily(
                tenant_id=approval.tenant_id, budget_id=budget.pk, start=start, end=now
            )
        ]
    return context


def _duration(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _policy_context(approval: ApprovalRequest) -> dict[str, Any]:
    from ratelimits import selectors as ratelimits

    details = approval.details or {}
    context: dict[str, Any] = {
        "request": {
            "extra_requests": details.get("extra_requests", approval.requested_amount),
            "duration_human": _duration(details.get("duration_seconds") or 0),
            "reason": str(details.get("reason") or "")[:500],
        }
    }
    try:
        policy = ratelimits.get_policy(tenant_id=approval.tenant_id, policy_id=approval.policy_id)
    except DomainError:
        return {**context, "gone": "The policy no longer exists."}
    now = clock.now()
    context["policy"] = {
        "name": str(policy),
        "scope_type": policy.scope_type,
        "scope_id": policy.scope_id,
        "resource_type": policy.resource_type,
        "limit_value": policy.limit_value,
        "time_window_seconds": policy.time_window_seconds,
        "algorithm": policy.algorithm,
        "burst_capacity": policy.burst_capacity,
        "mode": policy.mode,
    }
    context["recent_use"] = [
        {
            "label": label,
            "admitted": ratelimits.usage_over(
                tenant_id=approval.tenant_id, policy_id=policy.pk, since=now - window
            ),
        }
        for label, window in (
            ("last hour", timedelta(hours=1)),
            ("last 24 hours", timedelta(days=1)),
        )
    ]
    context["active_grants"] = [
        {"extra_requests": g.extra_requests, "ends_at": g.ends_at}
        for g in ratelimits.active_grants(tenant_id=approval.tenant_id, policy_id=policy.pk, at=now)
    ]
    return context


register(Kind.BUDGET_OVERRUN, _budget_context)
register(Kind.EMERGENCY_CAPACITY, _policy_context)
