"""Fixtures for the ratelimits app's tests.

`rl_store` runs a test on the database store (the embedded default) and, where marked
`redis`, on the real Redis; each Redis test gets its own key prefix-free tenant cleanup and an
injected clock (the platform clock, which time-machine moves).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis
from rest_framework.test import APIClient

from budgeting_site.platform.auth import issue_jwt
from ratelimits import runtime

BASE = "/budget/v1"
# A Wednesday, 10:00 UTC, in the middle of a day and of an hour.
NOON = datetime(2024, 1, 3, 10, 0, 0, tzinfo=UTC)


def _redis_url() -> str:
    return os.environ.get("REDIS_URL", "").strip()


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def rl_store(request: pytest.FixtureRequest, settings) -> str:  # type: ignore[no-untyped-def]
    kind: str = request.param
    settings.RATELIMIT_STORE = kind
    settings.RATELIMIT_ALLOW_INJECTED_CLOCK = True
    if kind == "redis":
        url = _redis_url()
        settings.REDIS_URL = url
        client = redis.Redis.from_url(url, socket_timeout=5)
        for tenant in ("t-acme", "t-globex"):
            for key in client.scan_iter(match=f"rl:{{{tenant}}}:*", count=1000):
                client.delete(key)
        client.close()
        settings.RATELIMIT_REDIS_TIMEOUT_MS = 2000
    runtime.reset()
    return kind


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """Clients whose tokens hold from before NOON to far ahead, so tests may travel in time."""

    def make(roles: list[str], tenant: str = "t-acme", sub: str = "svc-test") -> APIClient:
        token = issue_jwt(
            tenant_id=tenant,
            roles=roles,
            sub=sub,
            iat=int(NOON.timestamp()) - 30 * 86_400,
            exp=2**31 - 1,
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def service(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for(["service"])


@pytest.fixture
def admin_client(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for(["tenant_admin"], sub="admin-1")


def make_policy(client: APIClient, **fields: object) -> dict:
    body = {
        "resource_type": "llm.tokens",
        "limit_value": 5,
        "time_window_seconds": 3600,
        "algorithm": "fixed_window",
    }
    body.update(fields)
    response = client.post(f"{BASE}/rate-limits", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def check(client: APIClient, **fields: object):  # type: ignore[no-untyped-def]
    body = {"resource_type": "llm.tokens"}
    body.update(fields)
    return client.post(f"{BASE}/rate-limits/check", body, format="json")
