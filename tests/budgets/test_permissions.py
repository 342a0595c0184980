"""The permission matrix of every budget endpoint (SPEC 1.1, 1.2): anonymous 401, wrong role
403, a foreign tenant_id 403, another tenant's by-id resource 404, the right role OK."""

import uuid

import pytest
from rest_framework.test import APIClient

from budgeting_site.platform.models import AuditLogEntry
from tests.budgets.conftest import OTHER, TENANT, check, make_budget, real_time_client

pytestmark = pytest.mark.django_db

ALL_ROLES = (
    "tenant_admin",
    "financial_controller",
    "auditor",
    "tenant_user",
    "system_architect",
    "service",
)
READ = {"tenant_admin", "financial_controller", "auditor", "service"}
WRITE = {"tenant_admin", "financial_controller"}
CHECK = {"service", "tenant_admin", "tenant_user"}
HOLD = {"service", "tenant_admin"}
B = "/budget/v1/budgets"


@pytest.fixture
def world(frozen):
    mine = make_budget("1000", kind="project", target="p1")
    theirs = make_budget("1000", tenant_id=OTHER, kind="project", target="p1")
    my_hold = check("1", operation_context={"project_id": "p1"})["reservation_id"]
    their_hold = check("1", tenant_id=OTHER, operation_context={"project_id": "p1"})[
        "reservation_id"
    ]
    return {"mine": mine.pk, "theirs": theirs.pk, "my_hold": my_hold, "their_hold": their_hold}


def _budget_body():
    return {
        "budget_name": "x",
        "budget_amount": 10,
        "period_type": "monthly",
        "allocated_to_type": "feature",
        "allocated_to_id": f"f-{uuid.uuid4()}",
        "enforcement_action": "soft_limit",
    }


# (name, method, path template, body, roles that may, expected success status)
ENDPOINTS = [
    ("list", "get", B, None, READ, 200),
    ("create", "post", B, _budget_body, WRITE, 201),
    ("retrieve", "get", B + "/{id}", None, READ, 200),
    ("utilization", "get", B + "/{id}/utilization", None, READ, 200),
    (
        "replace",
        "put",
        B + "/{id}",
        lambda: {
            **_budget_body(),
            "allocated_to_type": "project",
            "allocated_to_id": "p1",
            "version": 1,
        },
        WRITE,
        200,
    ),
    ("check", "post", B + "/check", lambda: {"estimated_cost": 1}, CHECK, 200),
    ("dry_run", "post", B + "/check", lambda: {"estimated_cost": 1, "dry_run": True}, READ, 200),
    ("batch", "post", B + "/check/batch", lambda: {"checks": [{"estimated_cost": 1}]}, CHECK, 200),
    ("hold", "get", B + "/reservations/{hold}", None, READ, 200),
    (
        "extend",
        "post",
        B + "/reservations/{hold}/extend",
        lambda: {"hold_ttl_seconds": 60},
        HOLD,
        200,
    ),
    ("commit", "post", B + "/reservations/{hold}/commit", lambda: {"actual_cost": 1}, HOLD, 200),
    ("release", "post", B + "/reservations/{hold}/release", lambda: {}, HOLD, 200),
    ("delete", "delete", B + "/{id}?force=true", None, {"tenant_admin"}, 204),
]
BY_ID = {"retrieve", "utilization", "replace", "hold", "extend", "commit", "release", "delete"}


def _call(client, method, template, body, ids):
    path = template.format(id=ids["id"], hold=ids["hold"])
    kwargs = {"format": "json"} if body is not None else {}
    data = body() if body is not None else None
    if method == "get":
        return client.get(path)
    if method == "delete":
        return client.delete(path)
    return getattr(client, method)(path, data, **kwargs)


def _client(auth, roles, tenant=TENANT):
    return real_time_client(auth, list(roles), tenant, "perm-tester")


@pytest.mark.parametrize(("name", "method", "template", "body", "allowed", "ok"), ENDPOINTS)
def test_permission_matrix(world, auth, name, method, template, body, allowed, ok):
    mine = {"id": world["mine"], "hold": world["my_hold"]}
    anonymous = _call(APIClient(), method, template, body, mine)
    assert anonymous.status_code == 401, name
    assert anonymous.json()["error_code"] == "UNAUTHORIZED"
    for role in ALL_ROLES:
        if role in allowed:
            continue
        response = _call(_client(auth, [role]), method, template, body, mine)
        assert response.status_code == 403, (name, role, response.content)
    if name in BY_ID:
        theirs = {"id": world["theirs"], "hold": world["their_hold"]}
        role = sorted(allowed)[0]
        response = _call(_client(auth, [role]), method, template, body, theirs)
        assert response.status_code == 404, (name, response.content)
    for role in sorted(allowed):
        if name in {"replace", "delete", "commit", "release"} and role != sorted(allowed)[0]:
            continue  # one successful write is enough; the rest would conflict
        response = _call(_client(auth, [role]), method, template, body, mine)
        assert response.status_code == ok, (name, role, response.content)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", B + "?tenant_id=t-globex", None),
        ("post", B, {"tenant_id": "t-globex", **_budget_body()}),
        ("post", B + "/check", {"tenant_id": "t-globex", "estimated_cost": 1}),
        ("post", B + "/check/batch", {"checks": [{"tenant_id": "t-globex", "estimated_cost": 1}]}),
    ],
)
def test_a_foreign_tenant_id_is_403_and_audited(world, auth, method, path, body):
    client = _client(auth, ["tenant_admin"])
    response = client.get(path) if method == "get" else client.post(path, body, format="json")
    assert response.status_code == 403
    assert AuditLogEntry.objects.filter(action="cross_tenant_denied").count() == 1


def test_a_tenant_user_may_check_but_not_dry_run(world, auth):
    client = _client(auth, ["tenant_user"])
    assert client.post(B + "/check", {"estimated_cost": 1}, format="json").status_code == 200
    dry = client.post(B + "/check", {"estimated_cost": 1, "dry_run": True}, format="json")
    assert dry.status_code == 403
