"""Fixtures of the costs tests: authenticated clients, FX rates, unit prices, a fixed clock."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from budgeting_site.platform.auth import issue_jwt
from costs import services

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
BASE = "/budget/v1/cost-tracking"


@pytest.fixture
def frozen() -> Iterator[Any]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def client_for(frozen: Any) -> Callable[..., APIClient]:
    """Clients whose tokens are issued at the frozen NOW and live long enough for tests that
    move the clock forward."""

    def make(tenant_id: str = "t-acme", roles: list[str] | None = None) -> APIClient:
        token = issue_jwt(
            tenant_id=tenant_id,
            roles=roles or ["service"],
            sub="svc-test",
            ttl_seconds=400 * 86400,
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def svc(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for("t-acme", ["service"])


@pytest.fixture
def admin(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for("t-acme", ["tenant_admin"])


@pytest.fixture
def eur_usd() -> None:
    services.set_fx_rate(
        base_currency="EUR",
        quote_currency="USD",
        rate=Decimal("1.1"),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )


ACTOR = {"principal": "svc-test", "credential_id": "", "instance": "test"}


def record(tenant_id: str = "t-acme", **fields: Any) -> Any:
    """Record through the service (what the endpoint calls)."""
    data = {"resource_type": "llm_tokens", "cost_amount": "1.00", **fields}
    return services.record_cost(tenant_id=tenant_id, data=data, actor=ACTOR).record
