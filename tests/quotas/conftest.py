"""Helpers for the quotas tests: API clients per role and small builders."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from events.models import Alert, OutboxEvent
from receipts.models import Receipt

BASE = "/budget/v1"
T0 = datetime(2025, 3, 1, tzinfo=UTC)


class TokenClient(APIClient):
    """Signs a fresh token for every request, so tests may travel in time (a token issued
    before a jump into the past would not be valid yet)."""

    def __init__(self, make_token: Callable[..., str], tenant_id: str, roles: list[str], sub: str):
        super().__init__()
        self._token = lambda: make_token(tenant_id, roles, sub)

    def request(self, **kwargs: Any):  # type: ignore[override]
        kwargs.setdefault("HTTP_AUTHORIZATION", f"Bearer {self._token()}")
        return super().request(**kwargs)


@pytest.fixture
def client_for(make_token: Callable[..., str]) -> Callable[..., APIClient]:
    def build(
        tenant_id: str = "t-acme", roles: list[str] | None = None, sub: str = "svc"
    ) -> APIClient:
        return TokenClient(make_token, tenant_id, roles or ["tenant_admin"], sub)

    return build


@pytest.fixture
def admin(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for("t-acme", ["tenant_admin"], "admin-1")


@pytest.fixture
def svc(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for("t-acme", ["service"], "svc-1")


def post(client: APIClient, path: str, body: Any, **headers: str):
    return client.post(
        f"{BASE}{path}",
        data=json.dumps(body, default=str),
        content_type="application/json",
        **headers,
    )


def allocate(client: APIClient, **fields: Any) -> dict[str, Any]:
    body = {"resource_type": "api_calls", "allocated_amount": 1000, **fields}
    response = post(client, "/quotas/allocate", body)
    assert response.status_code == 201, response.content
    return response.json()


def consume(client: APIClient, amount: Any, **fields: Any):
    return post(
        client, "/quotas/consume", {"resource_type": "api_calls", "amount": amount, **fields}
    )


def events(event_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(e.body)
        for e in OutboxEvent.objects.filter(event_type=event_type).order_by("created_at")
    ]


def alerts(alert_type: str) -> list[Alert]:
    return list(Alert.objects.filter(alert_type=alert_type).order_by("first_seen_at"))


def receipt(receipt_id: str) -> dict[str, Any]:
    return json.loads(Receipt.objects.get(pk=receipt_id).canonical)


def D(value: Any) -> Decimal:
    return Decimal(str(value))
