"""The costs app's only door into the budgets app (its services and selectors, imported lazily
so that the two apps can be loaded in any order)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)


def _budget_services() -> Any:
    """budgets.services, or None while the budgets app does not provide it."""
    try:
        from budgets import services
    except ImportError:
        return None
    if not hasattr(services, "apply_spending"):
        return None
    return services


@dataclass(frozen=True)
class Spending:
    """One cost that counts toward the budgets its attribution matches."""

    record_id: UUID
    amount: Decimal
    currency: str
    timestamp: datetime
    attributed_to_type: str
    attributed_to_id: str
    operation_context: dict[str, Any]


def settle_hold(
    *, tenant_id: str, reservation_id: UUID, spending: Spending, actor: dict[str, Any]
) -> None:
    """Replace a hold's estimate with the actual cost (SPEC 2.4). Raises the budgets app's
    domain error when the hold cannot be settled."""
    from budgeting_site.platform.errors import ServiceUnavailable

    services = _budget_services()
    if services is None:
        raise ServiceUnavailable("Budget holds cannot be settled right now")

    services.settle_hold(
        tenant_id=tenant_id,
        reservation_id=reservation_id,
        actual_cost=spending.amount,
        currency=spending.currency,
        record_id=spending.record_id,
        at=spending.timestamp,
        actor=actor,
    )


def apply_spending(*, tenant_id: str, items: Sequence[Spending], actor: dict[str, Any]) -> None:
    """Add each cost to the spending of every budget it matches (SPEC 2.4); a negative
    amount takes a reversed or re-allocated cost back out."""
    if not items:
        return
    services = _budget_services()
    if services is None:
        logger.warning("costs.budgets_unavailable", extra={"count": len(items)})
        return

    bulk = getattr(services, "apply_spending_bulk", None)
    if bulk is not None:
        bulk(tenant_id=tenant_id, items=list(items), actor=actor)
        return
    for item in items:
        services.apply_spending(
            tenant_id=tenant_id,
            amount=item.amount,
            currency=item.currency,
            timestamp=item.timestamp,
            attributed_to_type=item.attributed_to_type,
            attributed_to_id=item.attributed_to_id,
            operation_context=item.operation_context,
            record_id=item.record_id,
            actor=actor,
        )


def reverse_spending(
    *,
    tenant_id: str,
    original: Spending,
    reversal_id: UUID | str,
    reservation_id: UUID | None,
    actor: dict[str, Any],
) -> None:
    """Take a reversed or re-allocated record's cost back out of the budgets it counted
    toward: those of the hold it settled, or those its attribution matches."""
    services = _budget_services()
    if services is None:
        logger.warning("costs.budgets_unavailable", extra={"count": 1})
        return

    services.reverse_spending(
        tenant_id=tenant_id,
        amount=original.amount,
        currency=original.currency,
        attributed_to_type=original.attributed_to_type,
        attributed_to_id=original.attributed_to_id,
        operation_context=original.operation_context,
        record_id=reversal_id,
        at=original.timestamp,
        reservation_id=reservation_id,
        actor=actor,
    )


def default_currency(tenant_id: str) -> str:
    """The tenant's first budget currency, else USD (SPEC 4.2)."""
    try:
        from budgets import selectors
    except ImportError:
        return "USD"
    fn = getattr(selectors, "default_currency", None) or getattr(selectors, "tenant_currency", None)
    if fn is None:
        return "USD"
    return fn(tenant_id) or "USD"
