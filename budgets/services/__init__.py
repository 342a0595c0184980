"""Every write of the budgets app (SPEC 2). The API, the admin, the tasks and other apps call
these; nothing else writes budget rows.

For the costs app (SPEC 2.4) — all keyword-only, all safe inside the caller's transaction:

    settle_hold(*, tenant_id: str, reservation_id: UUID, actual_cost: Decimal,
                currency: str = "", record_id: UUID | str = "", at: datetime | None = None,
                actor: dict | None = None) -> SettleResult
        A cost record that names a reservation. An open hold is committed with the actual
        cost (converted from `currency`, default the check's currency, to each budget's);
        an expired hold that was committed at its estimate has the estimate replaced by the
        actual cost, once; an expired-and-released or released hold gets the actual cost
        added, once. A hold already settled is left alone (outcome "already_settled").
        `at` is the record's timestamp (FX rate, ledger time). Raises ReservationNotFound
        (404) for an unknown or foreign reservation; FxRateMissing (400) without a rate.

    apply_spending(*, tenant_id: str, amount: Decimal, currency: str,
                   attributed_to_type: str = "", attributed_to_id: str = "",
                   operation_context: dict | None = None, record_id: UUID | str = "",
                   at: datetime | None = None, timestamp: datetime | None = None,
                   actor: dict | None = None) -> list[UUID]
        A cost record without a reservation: adds `amount` to every budget its attribution or
        its operation_context (project_id, user_id, feature_id) matches, plus the tenant's
        budgets, in the period containing `at` (alias `timestamp`). Idempotent per (budget,
        record_id). A negative amount takes spending back out (never below zero). Returns
        the budgets changed. Recorded costs are never refused for being over a budget.

    reverse_spending(*, tenant_id, amount, currency, attributed_to_type="",
                     attributed_to_id="", operation_context=None, record_id="", at=None,
                     timestamp=None, reservation_id: UUID | None = None, actor=None)
        -> list[UUID]
        Takes abs(amount) back out of the budgets the original record counted toward: pass
        the original's attribution, context and timestamp, or the reservation it settled;
        `record_id` is the reversal's own id.

    apply_spending_bulk(*, tenant_id: str, items: Sequence[Spending], actor=None)
        -> list[UUID]
        Many records in one transaction (items with record_id, amount, currency, timestamp,
        attributed_to_type, attributed_to_id, operation_context).

Checks and holds (the API): `check_budget`, `check_budget_batch`, `commit_reservation`,
`release_reservation`, `extend_reservation`, `expire_reservation`, `expire_overdue`.
Definitions: `create_budget`, `update_budget`, `delete_budget`. Jobs: `check_forecasts`,
`reconcile`. The throttle factor for the rate-limit engine is a read:
`budgets.selectors.throttle_factor(tenant_id, scope_type, scope_id) -> Decimal | None`.
"""

from budgets.services.check import (
    CheckInput,
    check_budget,
    check_budget_batch,
)
from budgets.services.definitions import create_budget, delete_budget, update_budget
from budgets.services.holds import (
    SettleResult,
    commit_reservation,
    expire_overdue,
    expire_reservation,
    extend_reservation,
    release_reservation,
    settle_hold,
)
from budgets.services.jobs import check_forecasts, reconcile
from budgets.services.spending import apply_spending, apply_spending_bulk, reverse_spending

__all__ = [
    "CheckInput",
    "SettleResult",
    "apply_spending",
    "apply_spending_bulk",
    "check_budget",
    "check_budget_batch",
    "check_forecasts",
    "commit_reservation",
    "create_budget",
    "delete_budget",
    "expire_overdue",
    "expire_reservation",
    "extend_reservation",
    "reconcile",
    "release_reservation",
    "reverse_spending",
    "settle_hold",
    "update_budget",
]
