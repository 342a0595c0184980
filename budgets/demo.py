"""Demo budgets for `manage.py seed_demo`: a realistic small tenant, safe to run again.

- Five budgets, one per target level and enforcement action, started three months back so
  their history has earlier periods.
- Steady spending on the four that have a target below the tenant, recorded as cost records
  through the costs app (on top of its own demo records) over the last 60 days, a few a day,
  so utilization, forecast and "recent spending by day" look like a running system whatever
  the day of the period, and the cost charts add up to what the budgets show.
- On the escalate budget "Summarize feature": a check by `svc-summarizer` over the budget,
  which leaves a pending `budget_overrun` approval; and, before it, one by
  `svc-nightly-digest` that the demo user `finance` rejected with a comment (the history page).

Everything goes through the services (budgets, costs, approvals). A second run adds only the
records of the hours that have passed since, and no second approval request while one is
pending.
"""

import logging
import random
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from budgeting_site.platform import clock
from budgeting_site.platform.principal import Principal
from budgets import selectors
from budgets.models import Budget

logger = logging.getLogger(__name__)

CURRENCY = "USD"

DEMO_BUDGETS = (
    # name, target type, target id (None: the tenant), amount, period, enforcement,
    # steady spending as a share of the amount per period (None: the tenant budget, which
    # counts every other budget's spending already).
    ("Company cloud spend", "tenant", None, "25000", "monthly", "soft_limit", None),
    ("Search project", "project", "proj-search", "6000", "monthly", "hard_stop", "0.42"),
    ("ML training", "project", "proj-ml-training", "40000", "quarterly", "throttle", "0.60"),
    ("Summarize feature", "feature", "feat-summarize", "750", "weekly", "escalate", "0.40"),
    ("Batch pipeline user", "user", "svc-batch-pipeline", "120", "daily", "hard_stop", "0.60"),
)
ESCALATE_BUDGET = "Summarize feature"

#: Where each budget's steady spending comes from: (resource type, service, operation context).
WORKLOADS = {
    "Search project": ("llm_tokens", "search-api", {}),
    "ML training": ("gpu_hours", "trainer", {}),
    "Summarize feature": ("llm_tokens", "chat-api", {"project_id": "proj-chat"}),
    "Batch pipeline user": ("api_calls", "batch-pipeline", {"project_id": "proj-analytics"}),
}
#: A period's nominal length in days, for the daily pace (the same whatever today is).
PERIOD_DAYS = {
    "daily": Decimal(1),
    "weekly": Decimal(7),
    "monthly": Decimal("30.44"),
    "monthly_rolling": Decimal(30),
    "quarterly": Decimal("91.31"),
    "yearly": Decimal("365.25"),
}
#: Spending is recorded at these UTC hours of each day (only those already past), over the
#: same 60 days as the costs app's demo records (so the cost per day has no step).
SPEND_HOURS = (3, 9, 15, 21)
HISTORY_DAYS = 59
COST_BATCH = 1000
COST_ACTOR = {"principal": "system:seed_demo", "credential_id": "", "instance": "seed"}

#: The pending overrun request (the brief's principal) and the decided one before it.
REQUESTER = "svc-summarizer"
DECIDED_REQUESTER = "svc-nightly-digest"
DECIDER_USERNAME = "finance"
DECISION_COMMENT = (
    "The nightly digest can wait for next week's budget; ask again if a customer is blocked."
)
#: How far past the remaining amount each request goes, as a share of the budget.
DECIDED_MARGIN = Decimal("0.30")
PENDING_MARGIN = Decimal("0.12")
CONTEXT = {"project_id": "proj-chat", "feature_id": "feat-summarize"}


def seed(tenant_id: str) -> None:
    now = clock.now()
    budgets = _budgets(tenant_id, now)
    _spending(tenant_id, budgets, now)
    escalate = budgets.get(ESCALATE_BUDGET)
    if escalate is not None:
        _approval_requests(tenant_id, escalate, now)


def _actor(tenant_id: str) -> Principal:
    return Principal(
        principal="system:seed_demo",
        tenant_id=tenant_id,
        roles=frozenset({"tenant_admin"}),
        kind="system",
    )


def _budgets(tenant_id: str, now: datetime) -> dict[str, Budget]:
    """The demo budgets by name: those of a previous run, the missing ones created."""
    from budgets import services

    here = now.astimezone(UTC)
    # The first day of the month three months back: every demo cost counts toward a budget.
    started = datetime(here.year, here.month, 1, tzinfo=UTC)
    for _ in range(3):
        started = (started - timedelta(days=1)).replace(day=1)
    found: dict[str, Budget] = {}
    for name, kind, target, amount, period, action, _pace in DEMO_BUDGETS:
        target_id = target or tenant_id
        existing = selectors.list_budgets(
            tenant_id=tenant_id, allocated_to_type=kind, allocated_to_id=target_id
        ).first()
        if existing is None:
            existing = services.create_budget(
                tenant_id=tenant_id,
                data={
                    "budget_name": name,
                    "budget_amount": Decimal(amount),
                    "currency": CURRENCY,
                    "period_type": period,
                    "start_date": started,
                    "allocated_to_type": kind,
                    "allocated_to_id": target_id,
                    "enforcement_action": action,
                },
                actor=_actor(tenant_id),
            )
        found[name] = existing
    return found


def _spending(tenant_id: str, budgets: dict[str, Budget], now: datetime) -> None:
    """Steady spending, recorded as cost records through the costs app (so the cost charts and
    the budgets tell one story, and the costs app applies them to the budgets, SPEC 2.4): each
    day `amount x pace / days of a period`, in a few records with a little noise, over the
    last HISTORY_DAYS days. The idempotency keys name the day and hour and the figures depend
    on nothing else, so a record counts once however often and whenever the demo is seeded."""
    from django.apps import apps

    if not apps.is_installed("costs"):
        logger.info("budgets.demo_no_costs_app")
        return
    from costs import services as costs

    today = now.astimezone(UTC).date()
    items: list[dict[str, Any]] = []
    for name, kind, target, _amount, _period, _action, pace in DEMO_BUDGETS:
        budget = budgets.get(name)
        if pace is None or budget is None or target is None:
            continue
        resource, service, context = WORKLOADS[name]
        days = PERIOD_DAYS.get(budget.period_type, Decimal(30))
        per_day = budget.budget_amount * Decimal(pace) / days
        for back in range(HISTORY_DAYS, -1, -1):
            day = today - timedelta(days=back)
            rng = random.Random(f"{name}|{day.isoformat()}")  # demo noise, the same every run
            for hour in SPEND_HOURS:
                at = datetime.combine(day, time(hour=hour), tzinfo=UTC)
                noise = Decimal(str(round(rng.uniform(0.7, 1.3), 3)))
                if at > now:
                    continue
                amount = (per_day / len(SPEND_HOURS) * noise).quantize(Decimal("0.01"))
                items.append(
                    {
                        "idempotency_key": f"demo-budget-{target}-{day:%Y%m%d}-{hour:02d}",
                        "resource_type": resource,
                        "cost_amount": str(amount),
                        "currency": budget.currency,
                        "service_name": service,
                        "attributed_to_type": kind,
                        "attributed_to_id": target,
                        "operation_context": context,
                        "timestamp": at.isoformat(),
                    }
                )
    for first in range(0, len(items), COST_BATCH):
        outcome = costs.record_batch(
            tenant_id=tenant_id, items=items[first : first + COST_BATCH], actor=COST_ACTOR
        )
        if outcome.failed_count:
            logger.warning(
                "budgets.demo_costs_failed",
                extra={
                    "failed": outcome.failed_count,
                    "first_error": next((r.message for r in outcome.results if r.error_code), None),
                },
            )


def _approval_requests(tenant_id: str, budget: Budget, now: datetime) -> None:
    """A rejected overrun request (once) and a pending one by `svc-summarizer` (while none is
    pending), both made by real checks over the escalate budget."""
    from approvals import selectors as approvals
    from approvals import services as approval_services
    from approvals.models import Kind, Status

    requests = approvals.list_approvals(tenant_id=tenant_id, kind=Kind.BUDGET_OVERRUN).filter(
        budget_id=budget.pk
    )
    if not requests.exclude(status=Status.PENDING).exists():
        approval_id = _overrun_check(tenant_id, budget, DECIDED_REQUESTER, DECIDED_MARGIN, now)
        decider = _decider(tenant_id)
        if approval_id is not None and decider is not None:
            approval_services.reject(
                tenant_id=tenant_id,
                approval_id=approval_id,
                approver=decider,
                comment=DECISION_COMMENT,
            )
    if not requests.filter(status=Status.PENDING, requested_by=REQUESTER).exists():
        _overrun_check(tenant_id, budget, REQUESTER, PENDING_MARGIN, now)


def _overrun_check(
    tenant_id: str, budget: Budget, requester: str, margin: Decimal, now: datetime
) -> Any:
    """A check whose estimate takes the budget past its amount: escalated, it holds nothing
    and leaves a pending approval request. Returns the request's id (None if it was allowed,
    which the estimate rules out)."""
    from budgets import services

    view = selectors.current_periods([budget], now).get(budget.pk)
    if view is None:
        return None
    left = max(view["budget_amount"] - view["spent_amount"] - view["reserved_amount"], Decimal(0))
    # Over the remaining amount by `margin` of the budget, rounded up to 10.
    estimate = ((left + budget.budget_amount * margin) / 10).quantize(
        Decimal(1), rounding=ROUND_CEILING
    ) * 10
    answer = services.check_budget(
        tenant_id=tenant_id,
        check=services.CheckInput(
            estimated_cost=estimate,
            resource_type="llm.completions",
            allocated_to_type="feature",
            allocated_to_id=budget.allocated_to_id,
            operation_context=CONTEXT,
        ),
        principal=Principal(
            principal=requester, tenant_id=tenant_id, roles=frozenset({"service"}), kind="jwt"
        ),
    )
    if answer.get("allowed"):  # cannot happen: the estimate is past what is left
        logger.warning("budgets.demo_check_allowed", extra={"budget_id": str(budget.pk)})
        return None
    return answer.get("approval_id")


def _decider(tenant_id: str) -> Principal | None:
    """The demo manager `finance` as the approval pages would act: `user:finance` with the
    roles of that membership (None when `seed_demo` made no such user)."""
    from budgeting_site.platform.models import TenantMembership

    membership = (
        TenantMembership.objects.filter(tenant_id=tenant_id, user__username=DECIDER_USERNAME)
        .select_related("user")
        .first()
    )
    if membership is None:
        return None
    return Principal(
        principal=f"user:{DECIDER_USERNAME}",
        tenant_id=tenant_id,
        roles=frozenset(membership.roles),
        credential_id=f"user:{membership.user.pk}",
        kind="user",
    )
