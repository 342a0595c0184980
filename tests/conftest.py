"""Fixtures every app's tests share.

PostgreSQL and Redis tests are marked; without the service they skip with the reason, and
under CI=true a skip of them is a failure, so CI cannot pass with them unrun.
"""

import os
from collections.abc import Callable

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from budgeting_site.platform.auth import issue_jwt

IN_CI = os.environ.get("CI", "").lower() == "true"

TENANT = "t-acme"
OTHER_TENANT = "t-globex"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres"):
        _require(django_settings.IS_POSTGRES, "needs PostgreSQL: set DATABASE_URL")
    if item.get_closest_marker("redis"):
        _require(bool(django_settings.REDIS_URL), "needs Redis: set REDIS_URL")


@pytest.fixture(autouse=True)
def _api_limits_off(settings):
    # Tests run with this API's own limits off unless a test turns them on explicitly.
    settings.API_RATE_LIMITS = None


@pytest.fixture
def tenant() -> str:
    return TENANT


@pytest.fixture
def other_tenant() -> str:
    return OTHER_TENANT


@pytest.fixture
def make_token() -> Callable[..., str]:
    def make(tenant_id: str, roles: list[str], sub: str = "svc-test", **extra: object) -> str:
        return issue_jwt(tenant_id=tenant_id, roles=roles, sub=sub, **extra)

    return make


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def auth(make_token: Callable[..., str]) -> Callable[..., APIClient]:
    def authenticate(
        client: APIClient, tenant_id: str, roles: list[str], sub: str = "svc-test"
    ) -> APIClient:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(tenant_id, roles, sub)}")
        return client

    return authenticate
