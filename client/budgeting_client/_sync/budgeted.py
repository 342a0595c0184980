# GENERATED from budgeting_client/_async/budgeted.py by client/tools/unasync.py: do not edit.
"""check → run → record (or release): the helper every caller needs.

Written once in async form; `_sync/budgeted.py` is generated from this file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from budgeting_client import hold as _hold
from budgeting_client.errors import ApprovalRequired, BudgetDenied
from budgeting_client.hold import Hold

if TYPE_CHECKING:
    from budgeting_client._sync.client import BudgetClient

logger = logging.getLogger("budgeting_client")
F = TypeVar("F", bound=Callable[..., Any])


class Budgeted:
    """`with client.budgeted(...) as hold:` or `@client.budgeted(...)`.

    On entry: `POST /budgets/check` (a real hold, not a dry run). Denied: `BudgetDenied` (or
    `ApprovalRequired` when an escalate budget opened an approval) is raised and the work never
    runs. Allowed: the block runs. It ends normally: `POST /cost-tracking/record` with the
    actual cost (the estimate when none was set) and the `reservation_id`, which settles the
    hold. It raises: `POST /budgets/reservations/{id}/release`, and the work's exception goes
    on unchanged (a failed release is logged and kept on `hold.release_error`; the hold then
    expires on its own).
    """

    def __init__(
        self,
        client: BudgetClient,
        *,
        resource_type: str,
        estimated_cost: Any,
        currency: str | None = None,
        allocated_to_type: str | None = None,
        allocated_to_id: str | None = None,
        operation_context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        hold_ttl_seconds: int | None = None,
        service_name: str | None = None,
        resource_id: str | None = None,
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        usage_unit: str | None = None,
        cost_from_result: Callable[[Any], Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self._client = client
        self._options: dict[str, Any] = {
            "resource_type": resource_type,
            "estimated_cost": estimated_cost,
            "currency": currency,
            "allocated_to_type": allocated_to_type,
            "allocated_to_id": allocated_to_id,
            "operation_context": operation_context,
            "approval_id": approval_id,
            "hold_ttl_seconds": hold_ttl_seconds,
            "service_name": service_name,
            "resource_id": resource_id,
            "region": region,
            "tags": tags,
            "usage_unit": usage_unit,
            "cost_from_result": cost_from_result,
            "tenant_id": tenant_id,
        }
        self._hold: Hold | None = None
        self._token: Any = None
        self._call_args: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> Hold:
        if self._hold is not None:
            raise RuntimeError("a budgeted(...) block cannot be entered twice; make a new one")
        o = self._options
        args, kwargs = self._call_args
        estimated = _hold.estimate(o["estimated_cost"], args, kwargs)
        check = self._client.check_budget(
            resource_type=o["resource_type"],
            estimated_cost=estimated,
            currency=o["currency"],
            allocated_to_type=o["allocated_to_type"],
            allocated_to_id=o["allocated_to_id"],
            operation_context=o["operation_context"],
            approval_id=o["approval_id"],
            hold_ttl_seconds=o["hold_ttl_seconds"],
            tenant_id=o["tenant_id"],
        )
        if not check.allowed:
            if check.requires_approval:
                raise ApprovalRequired(check)
            raise BudgetDenied(check)
        self._hold = Hold(
            check=check,
            estimated_cost=estimated,
            tags=dict(o["tags"] or {}),
            resource_id=o["resource_id"],
        )
        self._token = _hold._current.set(self._hold)
        return self._hold

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        hold = self._hold
        if hold is None:  # pragma: no cover - __enter__ raised
            return False
        _hold._current.reset(self._token)
        if exc_type is None and not hold.cancelled:
            self._settle(hold)
        else:
            self._release(hold)
        return False

    def _settle(self, hold: Hold) -> None:
        o = self._options
        hold.recorded = self._client.record_cost(
            resource_type=o["resource_type"],
            cost_amount=hold.cost_to_record(),
            currency=o["currency"],
            usage_quantity=hold.usage_quantity,
            usage_unit=o["usage_unit"],
            resource_id=hold.resource_id,
            service_name=o["service_name"],
            attributed_to_type=o["allocated_to_type"],
            attributed_to_id=o["allocated_to_id"],
            operation_context=o["operation_context"],
            region=o["region"],
            tags=hold.tags or None,
            reservation_id=hold.reservation_id,
            tenant_id=o["tenant_id"],
            idempotency_key=_hold.settle_idempotency_key(hold.reservation_id),
        )

    def _release(self, hold: Hold) -> None:
        if not hold.reservation_id:
            return
        try:
            self._client.release_reservation(
                hold.reservation_id,
                idempotency_key=_hold.release_idempotency_key(hold.reservation_id),
            )
            hold.released = True
        except Exception as exc:
            # Never mask the work's own exception; the hold expires on its own.
            hold.release_error = exc
            logger.warning(
                "budgeting_client.release_failed",
                extra={"reservation_id": hold.reservation_id, "error": repr(exc)},
            )

    # --- decorator -----------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        options = dict(self._options)
        client = self._client

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            block = Budgeted(client, **options)
            block._call_args = (args, kwargs)
            with block as hold:
                result = func(*args, **kwargs)
                cost_from_result = options["cost_from_result"]
                if cost_from_result is not None and hold.actual_cost is None:
                    hold.actual_cost = cost_from_result(result)
                return result

        return wrapper  # type: ignore[return-value]
