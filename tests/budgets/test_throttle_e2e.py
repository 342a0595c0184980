"""End to end (SPEC 2.3, 3.3): a throttle budget above 80 % lowers the effective limit of the
rate-limit policies with the budget's scope, and stops doing so when utilization drops."""

import pytest

from budgets import services
from ratelimits import runtime
from tests.budgets.conftest import check, make_budget

pytestmark = pytest.mark.django_db
RL = "/budget/v1/rate-limits"


@pytest.fixture(autouse=True)
def _fresh_ratelimit_runtime():
    runtime.reset()
    yield
    runtime.reset()


def _policy(client, **fields):
    body = {
        "resource_type": "llm.tokens",
        "limit_value": 100,
        "time_window_seconds": 3600,
        "algorithm": "fixed_window",
        **fields,
    }
    response = client.post(RL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _limits(client):
    body = client.post(
        f"{RL}/check",
        {"resource_type": "llm.tokens", "scopes": {"project": "p1"}, "dry_run": True},
        format="json",
    ).json()
    return body["limit_value"], sorted(p["limit_value"] for p in body["policies"])


def test_a_throttle_budget_above_80_percent_lowers_the_rate_limit(client_as, frozen):
    admin = client_as(["tenant_admin"], sub="admin-1")
    service = client_as(["service"])
    _policy(admin)
    _policy(admin, scope_type="project", scope_id="p1")
    make_budget("100", kind="project", target="p1", action="throttle")
    assert _limits(service) == (100, [100, 100])

    held = check("90", operation_context={"project_id": "p1"})
    assert str(held["throttle_factor"]) == "0.5500"
    runtime.forget("t-acme")  # the engine caches factors for 2 s; a new process would not
    # Only the policy with the budget's own scope is throttled: floor(100 x 0.55).
    assert _limits(service) == (55, [55, 100])

    services.release_reservation(tenant_id="t-acme", reservation_id=held["reservation_id"])
    runtime.forget("t-acme")
    assert _limits(service) == (100, [100, 100])


def test_a_tenant_throttle_budget_lowers_every_policy(client_as, frozen):
    admin = client_as(["tenant_admin"], sub="admin-1")
    service = client_as(["service"])
    _policy(admin)
    _policy(admin, scope_type="project", scope_id="p1")
    make_budget("100", action="throttle")
    check("100")
    runtime.forget("t-acme")
    assert _limits(service) == (10, [10, 10])
