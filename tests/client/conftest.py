"""Fixtures for driving the client and `budgetctl` against the live test server."""

import pytest
from budgeting_client import AsyncBudgetClient, BudgetClient, RetryPolicy

ROLES = ["service", "tenant_admin"]
# Fast retries: the tests exercise the retry path, not the waiting.
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def token(make_token, tenant):
    return make_token(tenant, ROLES, sub="svc-client-test", ttl_seconds=3600)


@pytest.fixture
def client(live_server, token):
    with BudgetClient(live_server.url, token=token, retry=FAST, timeout=60) as c:
        yield c


@pytest.fixture
def async_client_factory(live_server, token):
    def make():
        return AsyncBudgetClient(live_server.url, token=token, retry=FAST, timeout=60)

    return make


@pytest.fixture
def cli_env(live_server, token, tmp_path):
    # An empty profile file path keeps the developer's own ~/.config out of the tests.
    return {
        "BUDGET_URL": live_server.url,
        "BUDGET_TOKEN": token,
        "BUDGETCTL_CONFIG": str(tmp_path / "no-such-config.toml"),
        "BUDGET_API_KEY": "",
        "BUDGET_PROFILE": "",
    }
