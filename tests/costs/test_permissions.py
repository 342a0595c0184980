"""The permission matrix of every costs endpoint (SPEC 1.1, 1.2): anonymous 401, wrong role
403, a foreign tenant_id 403, another tenant's record 404, the right roles succeed; a denied
request changes nothing."""

import pytest
from rest_framework.test import APIClient

from costs.models import CostAllocation, CostRecord
from tests.costs.conftest import BASE, record

pytestmark = pytest.mark.django_db

ALL_ROLES = [
    "tenant_admin",
    "financial_controller",
    "auditor",
    "tenant_user",
    "system_architect",
    "service",
]
READ = {"tenant_user", "tenant_admin", "financial_controller", "auditor", "service"}
RECORD = {"service", "tenant_admin"}
CORRECT = {"tenant_admin", "financial_controller"}
CSV = {"tenant_admin", "financial_controller", "auditor"}


def endpoints(record_id):
    rec = {"resource_type": "x", "cost_amount": 1}
    return [
        # (name, method, path, body, allowed roles, success status)
        ("record", "post", f"{BASE}/record", rec, RECORD, 202),
        (
            "batch",
            "post",
            f"{BASE}/record/batch",
            {"records": [{**rec, "idempotency_key": "k"}]},
            RECORD,
            202,
        ),
        ("records", "get", f"{BASE}/records", None, READ, 200),
        ("root", "get", BASE, None, READ, 200),
        ("detail", "get", f"{BASE}/{record_id}", None, READ, 200),
        ("reverse", "post", f"{BASE}/{record_id}/reverse", {"reason": "x"}, CORRECT, 202),
        ("report_get", "get", f"{BASE}/reports", None, READ, 200),
        ("report_post", "post", f"{BASE}/reports", {"report_type": "summary"}, READ, 200),
        ("report_csv", "get", f"{BASE}/reports?format=csv", None, CSV, 200),
        (
            "allocate",
            "post",
            f"{BASE}/allocations",
            {
                "rule": "equal",
                "cost_amount": 1,
                "resource_type": "x",
                "targets": [{"attributed_to_type": "project", "attributed_to_id": "p"}],
            },
            CORRECT,
            201,
        ),
        ("anomalies", "get", f"{BASE}/anomalies", None, READ, 200),
    ]


NAMES = [e[0] for e in endpoints("x")]


def call(client, method, path, body):
    if method == "get":
        return client.get(path)
    return client.post(path, body, format="json")


def state():
    return (
        CostRecord.objects.count(),
        CostAllocation.objects.count(),
        CostRecord.objects.filter(reversed_by__isnull=False).count(),
    )


@pytest.mark.parametrize("name", NAMES)
def test_anonymous_is_401(frozen, name):
    target = record()
    _, method, path, body, _, _ = next(e for e in endpoints(target.pk) if e[0] == name)
    before = state()
    r = call(APIClient(), method, path, body)
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHORIZED"
    assert state() == before


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", NAMES)
def test_roles(client_for, name, role):
    target = record()
    _, method, path, body, allowed, ok = next(e for e in endpoints(target.pk) if e[0] == name)
    before = state()
    r = call(client_for("t-acme", [role]), method, path, body)
    if role in allowed:
        assert r.status_code == ok, r.content
    else:
        assert r.status_code == 403, r.content
        assert r.json()["error_code"] == "FORBIDDEN"
        assert state() == before


@pytest.mark.parametrize("name", NAMES)
def test_a_foreign_tenant_id_is_403(client_for, name):
    target = record()
    _, method, path, body, allowed, _ = next(e for e in endpoints(target.pk) if e[0] == name)
    role = sorted(allowed)[0]
    client = client_for("t-acme", [role])
    before = state()
    if method == "get":
        sep = "&" if "?" in path else "?"
        r = client.get(f"{path}{sep}tenant_id=t-globex")
    else:
        r = client.post(path, {**body, "tenant_id": "t-globex"}, format="json")
    assert r.status_code == 403
    assert state() == before


@pytest.mark.parametrize("name", ["detail", "reverse"])
def test_another_tenants_record_is_404(client_for, name):
    foreign = record(tenant_id="t-globex")
    _, method, path, body, allowed, _ = next(e for e in endpoints(foreign.pk) if e[0] == name)
    before = state()
    r = call(client_for("t-acme", sorted(allowed)), method, path, body)
    assert r.status_code == 404
    assert r.json()["error_code"] == "NOT_FOUND"
    assert state() == before
