"""The hold a `budgeted(...)` block runs under (shared by the sync and the async helper)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from budgeting_client.models import BudgetCheck, CostRecorded, dec

_current: contextvars.ContextVar[Hold | None] = contextvars.ContextVar(
    "budgeting_client_current_hold", default=None
)


def current_hold() -> Hold | None:
    """The hold of the innermost `budgeted` block or decorated call running now, if any.

    Lets a decorated function report its actual cost: `current_hold().actual_cost = x`.
    """
    return _current.get()


@dataclass
class Hold:
    """The admitted check, and what the block tells the helper about the work.

    Set `actual_cost` (and optionally `usage_quantity`, `tags`, ...) before the block ends; it
    is recorded against `reservation_id`. Not set: the estimate is recorded. Call `cancel()`
    when the work did not spend anything after all: the hold is released instead.
    """

    check: BudgetCheck
    estimated_cost: Decimal
    actual_cost: Decimal | int | str | None = None
    usage_quantity: Decimal | int | str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    resource_id: str | None = None
    # What happened at the end of the block:
    recorded: CostRecorded | None = None
    released: bool = False
    release_error: BaseException | None = None
    _cancelled: bool = False

    @property
    def reservation_id(self) -> str | None:
        return self.check.reservation_id

    @property
    def allowed(self) -> bool:
        return self.check.allowed

    def cancel(self) -> None:
        """Release the hold at the end of the block instead of recording a cost."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cost_to_record(self) -> Decimal:
        chosen = dec(self.actual_cost)
        return self.estimated_cost if chosen is None else chosen


def settle_idempotency_key(reservation_id: str | None) -> str | None:
    """Settling one hold is one logical call whoever repeats it: its key follows the hold."""
    return f"budgeted:settle:{reservation_id}" if reservation_id else None


def release_idempotency_key(reservation_id: str) -> str:
    return f"budgeted:release:{reservation_id}"


def estimate(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decimal:
    amount = value(*args, **kwargs) if callable(value) else value
    result = dec(amount)
    if result is None:
        raise ValueError("estimated_cost is required")
    return result
