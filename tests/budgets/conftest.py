"""Helpers for the budgets tests: budgets made through the service, principals, a pinned
clock, and the API client with a role."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from budgeting_site.platform import clock
from budgeting_site.platform.principal import Principal
from budgets import services
from budgets.models import Budget, BudgetPeriod

TENANT = "t-acme"
OTHER = "t-globex"


def principal(
    tenant_id: str = TENANT, roles: tuple[str, ...] = ("service",), sub: str = "svc-test"
) -> Principal:
    return Principal(principal=sub, tenant_id=tenant_id, roles=frozenset(roles), kind="jwt")


ADMIN = principal(roles=("tenant_admin",), sub="admin-1")


def make_budget(
    amount: str | int = "100",
    *,
    tenant_id: str = TENANT,
    kind: str = "tenant",
    target: str | None = None,
    action: str = "hard_stop",
    period: str = "monthly",
    start: datetime | None = datetime(2024, 1, 1, tzinfo=UTC),
    end: datetime | None = None,
    currency: str = "USD",
    name: str | None = None,
    **extra: Any,
) -> Budget:
    data: dict[str, Any] = {
        "budget_name": name or f"{kind} {target or tenant_id} {action}",
        "budget_amount": Decimal(str(amount)),
        "currency": currency,
        "period_type": period,
        "start_date": start,
        "end_date": end,
        "allocated_to_type": kind,
        "allocated_to_id": target or (tenant_id if kind == "tenant" else None),
        "enforcement_action": action,
        **extra,
    }
    actor = principal(tenant_id=tenant_id, roles=("tenant_admin",), sub="admin-1")
    return services.create_budget(tenant_id=tenant_id, data=data, actor=actor)


def check(
    cost: str | int,
    *,
    tenant_id: str = TENANT,
    who: Principal | None = None,
    dry_run: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    return services.check_budget(
        tenant_id=tenant_id,
        check=services.CheckInput(estimated_cost=Decimal(str(cost)), **fields),
        principal=who or principal(tenant_id=tenant_id),
        dry_run=dry_run,
    )


def counters(budget: Budget) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of the budget's one period row (zeros when none)."""
    rows = list(BudgetPeriod.objects.filter(budget=budget))
    assert len(rows) <= 1, rows
    if not rows:
        return Decimal(0), Decimal(0)
    return rows[0].spent_amount, rows[0].reserved_amount


@pytest.fixture
def frozen() -> Iterator[Callable[[datetime], None]]:
    """Pin the platform clock; call the fixture's value to move it."""
    state = {"now": datetime(2024, 3, 15, 12, 0, tzinfo=UTC)}

    def move(to: datetime) -> None:
        state["now"] = to

    with clock.override(lambda: state["now"]):
        yield move


def real_time_client(auth: Callable[..., Any], roles: list[str], tenant_id: str, sub: str) -> Any:
    """A client whose token is issued at the real time: the JWT library checks `exp` against
    the wall clock, not the pinned platform clock."""
    from django.utils import timezone
    from rest_framework.test import APIClient

    with clock.override(timezone.now):
        return auth(APIClient(), tenant_id, roles, sub=sub)


@pytest.fixture
def client_as(api, auth) -> Callable[..., Any]:
    def make(roles: list[str], tenant_id: str = TENANT, sub: str = "svc-test") -> Any:
        return real_time_client(auth, roles, tenant_id, sub)

    return make
