"""Permission and tenant-isolation sweeps over every endpoint of the URL configuration.

For every operation the URL configuration serves under /budget/v1/:
- no credentials → 401 (unless the operation is public);
- credentials whose roles hold none of the operation's roles → 403;
- another tenant's ids in the path, with every role → 404, and nothing of theirs changed;
- every list, with every role → none of the other tenant's ids; their tenant_id → 403.
Driven over HTTP against the real stack, with API_RATE_LIMITS=off.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.system.conftest import OTHER_TENANT, TENANT
from tests.system.receiver import Receiver
from tests.system.routes import ALL_ROLES, api_routes, wrong_roles
from tests.system.world import TenantWorld, fill, re_params

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

# /metrics is public in the URL table but guards itself (an authenticated caller or the
# scrape token); the schema and docs are public by design.
SELF_GUARDED = {"/metrics"}


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def worlds(stack, receiver):
    ours = TenantWorld(stack, TENANT).seed(receiver.url)
    theirs = TenantWorld(stack, OTHER_TENANT).seed(receiver.url)
    return ours, theirs


def _dummy_path(template: str) -> str:
    path = template
    for p in re_params(template):
        path = path.replace("{" + p + "}", str(uuid.uuid4()))
    return path


def _request(client: httpx.Client, method: str, path: str) -> httpx.Response:
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, path, json={})
    return client.request(method, path)


def _protected():
    return [r for r in api_routes() if not r.public]


def test_url_configuration_has_the_domain_endpoints():
    templates = {r.template for r in api_routes()}
    expected = {
        "/budgets",
        "/budgets/check",
        "/rate-limits",
        "/rate-limits/check",
        "/cost-tracking/record",
        "/quotas/allocate",
        "/receipts",
        "/event-subscriptions",
        "/alerts",
        "/approvals",
    }
    missing = sorted(expected - templates)
    assert not missing, f"endpoints not (yet) in the URL configuration: {missing}"


def test_no_credentials_is_401_on_every_protected_operation(stack):
    failures = []
    with stack.client() as c:
        for route in _protected():
            r = _request(c, route.method, _dummy_path(route.template))
            body = r.json() if "json" in r.headers.get("content-type", "") else {}
            if r.status_code != 401 or body.get("error_code") != "UNAUTHORIZED":
                failures.append(f"{route}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_public_operations_answer_without_credentials(stack):
    with stack.client() as c:
        for route in api_routes():
            if route.public and route.template not in SELF_GUARDED and route.method == "GET":
                r = c.get(_dummy_path(route.template))
                assert r.status_code in (200, 503), f"{route}: {r.status_code}"
        assert c.get("/metrics").status_code in (401, 403)


def test_wrong_role_is_403_on_every_protected_operation(stack):
    failures = []
    for route in _protected():
        roles = wrong_roles(route.roles or frozenset())
        with stack.client(TENANT, roles) as c:
            r = _request(c, route.method, _dummy_path(route.template))
        body = r.json() if "json" in r.headers.get("content-type", "") else {}
        if r.status_code != 403 or body.get("error_code") != "FORBIDDEN":
            failures.append(f"{route} as {roles}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def _snapshot(world: TenantWorld) -> dict[str, str]:
    """The other tenant's resources as their lists show them (volatile fields left out)."""
    volatile = {"correlation_id", "forecast_amount", "last_seen_at", "pagination"}

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in volatile}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = {}
    with world.client() as c:
        for route in api_routes():
            if route.method != "GET" or route.params or route.public:
                continue
            if route.template.startswith(("/receipts", "/cost-tracking/reports", "/metrics")):
                continue
            r = c.get(route.template)
            if r.status_code == 200 and "json" in r.headers.get("content-type", ""):
                out[route.template] = json.dumps(strip(r.json()), sort_keys=True)
    return out


def test_foreign_ids_are_404_on_every_by_id_operation_and_change_nothing(stack, worlds):
    ours, theirs = worlds
    before = _snapshot(theirs)
    failures, unmapped = [], []
    with ours.client() as c:
        for route in api_routes():
            if route.public or not route.params:
                continue
            path, missing = fill(route.template, theirs)
            if path is None:
                unmapped.append(f"{route}: no id of the other tenant for {missing}")
                continue
            r = _request(c, route.method, path)
            body = r.json() if "json" in r.headers.get("content-type", "") else {}
            if r.status_code != 404 or body.get("error_code") != "NOT_FOUND":
                failures.append(f"{route} with their id: {r.status_code} {r.text[:200]}")
    after = _snapshot(theirs)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not failures, "\n".join(failures)
    assert not changed, f"the other tenant's resources changed: {changed}"
    assert not unmapped, (
        "by-id operations the sweep could not reach (seeding gaps: "
        f"{theirs.missing}):\n" + "\n".join(unmapped)
    )


def test_lists_show_nothing_of_another_tenant(stack, worlds):
    ours, theirs = worlds
    foreign = theirs.all_ids() - ours.all_ids()
    assert foreign, f"the other tenant has no resources to look for: {theirs.missing}"
    failures = []
    with ours.client() as c:
        for route in api_routes():
            if route.method != "GET" or route.params or route.public:
                continue
            r = c.get(route.template)
            leaked = [i for i in foreign if i in r.text]
            if leaked:
                failures.append(f"{route}: {len(leaked)} foreign ids, e.g. {leaked[0]}")
            r = c.get(route.template, params={"tenant_id": OTHER_TENANT})
            if r.status_code != 403:
                failures.append(f"{route}?tenant_id=<theirs>: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_every_role_matrix_entry_is_honoured_for_the_right_role(stack):
    """With exactly the roles an operation names, the answer is never 401/403."""
    failures = []
    for route in _protected():
        if not route.roles:
            continue
        with stack.client(TENANT, sorted(route.roles)) as c:
            r = _request(c, route.method, _dummy_path(route.template))
        if r.status_code in (401, 403) or r.status_code >= 500:
            failures.append(f"{route} as {sorted(route.roles)}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_all_roles_constant_matches_the_platform():
    from budgeting_site.platform.models import ROLES

    assert set(ROLES) == set(ALL_ROLES)
