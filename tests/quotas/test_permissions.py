"""The permission matrix of every quotas endpoint (SPEC 1.1, 1.2): anonymous 401, wrong role
403, a foreign tenant_id 403 (audited), another tenant's quota 404, the right roles succeed."""

import json

import pytest
from rest_framework.test import APIClient

from budgeting_site.platform.models import AuditLogEntry
from quotas.models import Quota, QuotaUsage
from tests.quotas.conftest import BASE, allocate

pytestmark = pytest.mark.django_db

ROLES = [
    "tenant_admin",
    "financial_controller",
    "auditor",
    "tenant_user",
    "system_architect",
    "service",
]
READ = {"tenant_user", "tenant_admin", "service"}
WRITE = {"tenant_admin"}
CONSUME = {"service", "tenant_admin", "tenant_user"}


def allocate_body(n: str = "x"):
    return {"resource_type": f"r-{n}", "allocated_amount": 10}


def batch_body(n: str = "x"):
    return {
        "allocations": [
            {"idempotency_key": f"k-{n}", "resource_type": f"r-{n}", "allocated_amount": 1}
        ]
    }


def pool_body(n: str = "x"):
    return {
        "resource_type": f"p-{n}",
        "pool_amount": 10,
        "strategy": "fair_share",
        "entities": [{"allocation_type": "project", "allocated_to_id": "p1"}],
    }


def consume_body(n: str = "x"):
    return {"resource_type": "api_calls", "amount": 1}


# (name, method, path with {id}, body factory, roles, success status, is by-id)
ENDPOINTS = [
    ("allocate", "post", "/quotas/allocate", allocate_body, WRITE, 201, False),
    ("batch list", "post", "/quotas/allocate/batch", batch_body, WRITE, 201, False),
    ("batch pool", "post", "/quotas/allocate/batch", pool_body, WRITE, 201, False),
    ("list", "get", "/quotas", None, READ, 200, False),
    ("retrieve", "get", "/quotas/{id}", None, READ, 200, True),
    ("patch", "patch", "/quotas/{id}", lambda n: {"auto_renew": False}, WRITE, 200, True),
    ("put", "put", "/quotas/{id}", lambda n: {"max_burst_amount": 3}, WRITE, 200, True),
    ("delete", "delete", "/quotas/{id}", None, WRITE, 204, True),
    ("consume", "post", "/quotas/consume", consume_body, CONSUME, 200, False),
    ("check", "post", "/quotas/check", consume_body, READ, 200, False),
]
IDS = [e[0] for e in ENDPOINTS]


@pytest.fixture
def existing(admin):
    """A quota of t-acme, with usage history kept out of the way (a separate resource)."""
    return allocate(admin, resource_type="api_calls", allocated_amount=1000)["quota_id"]


def call(client: APIClient, method: str, path: str, body=None, query: str = ""):
    kwargs = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    return getattr(client, method)(f"{BASE}{path}{query}", **kwargs)


def snapshot():
    return sorted(
        (
            str(q.pk),
            q.allocated_amount,
            q.used_amount,
            q.max_burst_amount,
            q.auto_renew,
            q.version,
            q.deleted_at,
        )
        for q in Quota.objects.all()
    ), QuotaUsage.objects.count()


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "allowed", "ok", "by_id"), ENDPOINTS, ids=IDS
)
def test_anonymous_is_401(existing, name, method, path, body, allowed, ok, by_id):
    before = snapshot()

    response = call(APIClient(), method, path.format(id=existing), body and body(name))

    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHORIZED"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "allowed", "ok", "by_id"), ENDPOINTS, ids=IDS
)
@pytest.mark.parametrize("role", ROLES)
def test_each_role(client_for, existing, role, name, method, path, body, allowed, ok, by_id):
    before = snapshot()

    response = call(
        client_for("t-acme", [role]), method, path.format(id=existing), body and body(name)
    )

    if role in allowed:
        assert response.status_code == ok, response.content
    else:
        assert response.status_code == 403, response.content
        assert response.json()["error_code"] == "FORBIDDEN"
        assert snapshot() == before


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "allowed", "ok", "by_id"), ENDPOINTS, ids=IDS
)
def test_a_foreign_tenant_id_is_403_and_audited(
    client_for, existing, name, method, path, body, allowed, ok, by_id
):
    role = sorted(allowed)[0]
    before = snapshot()
    payload = body(name) if body else None
    query = ""
    if payload is not None:
        payload = {**payload, "tenant_id": "t-globex"}
    else:
        query = "?tenant_id=t-globex"

    response = call(client_for("t-acme", [role]), method, path.format(id=existing), payload, query)

    assert response.status_code == 403
    assert snapshot() == before
    assert (
        AuditLogEntry.objects.filter(
            action="cross_tenant_denied", target_tenant_id="t-globex"
        ).count()
        == 1
    )


def test_a_foreign_tenant_id_inside_a_batch_item_is_403(admin):
    body = batch_body()
    body["allocations"][0]["tenant_id"] = "t-globex"

    response = call(admin, "post", "/quotas/allocate/batch", body)

    assert response.status_code == 403
    assert Quota.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "allowed", "ok", "by_id"),
    [e for e in ENDPOINTS if e[6]],
    ids=[e[0] for e in ENDPOINTS if e[6]],
)
def test_another_tenants_quota_is_404(
    client_for, existing, name, method, path, body, allowed, ok, by_id
):
    before = snapshot()

    response = call(
        client_for("t-globex", ["tenant_admin", "service", "tenant_user"]),
        method,
        path.format(id=existing),
        body and body(name),
    )

    assert response.status_code == 404
    assert snapshot() == before


def test_own_tenant_id_is_accepted(admin):
    response = call(admin, "post", "/quotas/allocate", {**allocate_body(), "tenant_id": "t-acme"})

    assert response.status_code == 201


def test_consume_in_another_tenant_never_touches_ours(client_for, existing):
    other = client_for("t-globex", ["service"])

    answer = call(other, "post", "/quotas/consume", consume_body()).json()

    assert answer["quota_id"] is None
    assert Quota.objects.get(pk=existing).used_amount == 0


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_methods_a_view_lacks_are_405(admin, method):
    assert call(admin, method, "/quotas/allocate").status_code == 405
