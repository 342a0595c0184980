"""Policies: CRUD, 409 on a duplicate, versions, permissions (SPEC 3.1, 1.1, 1.2)."""

from __future__ import annotations

import pytest

from ratelimits.models import RateLimitPolicy
from receipts.models import Receipt

from .conftest import BASE, make_policy

pytestmark = pytest.mark.django_db


def test_create_policy_defaults_and_receipt(admin_client):
    body = make_policy(admin_client)
    assert body["scope_type"] == "tenant"
    assert body["scope_id"] == "t-acme"
    assert body["mode"] == "enforce" and body["fail_mode"] == "open" and body["enabled"] is True
    assert body["version"] == 1 and body["burst_capacity"] == 0
    assert Receipt.objects.filter(gate_id="policy-admin", tenant_id="t-acme").count() == 1


def test_default_algorithm_is_token_bucket(admin_client):
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {"resource_type": "x", "limit_value": 1, "time_window_seconds": 1},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["algorithm"] == "token_bucket"


def test_duplicate_scope_and_resource_is_409(admin_client):
    make_policy(admin_client)
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {"resource_type": "llm.tokens", "limit_value": 9, "time_window_seconds": 60},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error_code"] == "CONFLICT"
    assert RateLimitPolicy.objects.count() == 1


def test_same_resource_other_scope_is_fine(admin_client):
    make_policy(admin_client)
    other = make_policy(admin_client, scope_type="user", scope_id="u-1")
    assert other["scope_id"] == "u-1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit_value", 0),
        ("time_window_seconds", 0),
        ("algorithm", "leaky"),
        ("burst_capacity", -1),
        ("mode", "audit"),
        ("fail_mode", "maybe"),
        ("overrides", {"priority_multipliers": {"urgent": 2}}),
        (
            "overrides",
            {"time_of_day_adjustments": [{"start_hour": 30, "end_hour": 2, "multiplier": 1}]},
        ),
        ("surprise", 1),
    ],
)
def test_invalid_policy_is_400_naming_the_field(admin_client, field, value):
    body = {"resource_type": "x", "limit_value": 1, "time_window_seconds": 1, field: value}
    response = admin_client.post(f"{BASE}/rate-limits", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert RateLimitPolicy.objects.count() == 0


def test_sliding_log_limit_is_capped_by_setting(admin_client, settings):
    settings.RATELIMIT_SLIDING_LOG_MAX = 100
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {
            "resource_type": "x",
            "limit_value": 101,
            "time_window_seconds": 60,
            "algorithm": "sliding_window_log",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "limit_value" in response.json()["details"]


def test_update_bumps_version_and_stale_version_is_409(admin_client):
    policy = make_policy(admin_client)
    url = f"{BASE}/rate-limits/{policy['policy_id']}"
    body = {
        "resource_type": "llm.tokens",
        "limit_value": 7,
        "time_window_seconds": 60,
        "version": 1,
    }
    response = admin_client.put(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2 and response.json()["limit_value"] == 7
    stale = admin_client.put(url, body, format="json")
    assert stale.status_code == 409
    assert RateLimitPolicy.objects.get().limit_value == 7


def test_delete_then_404(admin_client):
    policy = make_policy(admin_client)
    url = f"{BASE}/rate-limits/{policy['policy_id']}"
    assert admin_client.delete(url).status_code == 204
    assert admin_client.get(url).status_code == 404


def test_list_filters_and_pagination(admin_client):
    make_policy(admin_client)
    make_policy(admin_client, scope_type="user", scope_id="u-1")
    make_policy(admin_client, resource_type="images")
    body = admin_client.get(f"{BASE}/rate-limits?scope_type=user").json()
    assert [p["scope_id"] for p in body["policies"]] == ["u-1"]
    body = admin_client.get(f"{BASE}/rate-limits?resource_type=llm.tokens&page_size=1").json()
    assert body["pagination"]["total_count"] == 2 and len(body["policies"]) == 1
    assert admin_client.get(f"{BASE}/rate-limits?scope_type=galaxy").status_code == 400


def test_bad_uuid_in_path_is_400(admin_client):
    assert admin_client.get(f"{BASE}/rate-limits/not-a-uuid").status_code == 400


# --- permission matrix -------------------------------------------------------------------------


def test_anonymous_is_401(api):
    assert api.get(f"{BASE}/rate-limits").status_code == 401
    assert (
        api.post(f"{BASE}/rate-limits/check", {"resource_type": "x"}, format="json").status_code
        == 401
    )


def test_other_tenant_policy_is_404(admin_client, client_for):
    policy = make_policy(admin_client)
    other = client_for(["tenant_admin"], tenant="t-globex")
    url = f"{BASE}/rate-limits/{policy['policy_id']}"
    assert other.get(url).status_code == 404
    assert other.delete(url).status_code == 404
    assert RateLimitPolicy.objects.count() == 1


def test_foreign_tenant_id_in_body_is_403(admin_client):
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {"tenant_id": "t-globex", "resource_type": "x", "limit_value": 1, "time_window_seconds": 1},
        format="json",
    )
    assert response.status_code == 403
    assert RateLimitPolicy.objects.count() == 0


@pytest.mark.parametrize(
    ("roles", "read", "write"),
    [
        (["tenant_admin"], 200, 201),
        (["system_architect"], 200, 201),
        (["auditor"], 200, 403),
        (["service"], 200, 403),
        (["tenant_user"], 403, 403),
        (["financial_controller"], 403, 403),
    ],
)
def test_policy_role_matrix(client_for, roles, read, write):
    client = client_for(roles)
    assert client.get(f"{BASE}/rate-limits").status_code == read
    response = client.post(
        f"{BASE}/rate-limits",
        {"resource_type": "x", "limit_value": 1, "time_window_seconds": 1},
        format="json",
    )
    assert response.status_code == write


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (["service"], 200),
        (["tenant_admin"], 200),
        (["tenant_user"], 200),
        (["auditor"], 403),
        (["system_architect"], 403),
        (["financial_controller"], 403),
    ],
)
def test_check_role_matrix(client_for, roles, status):
    response = client_for(roles).post(
        f"{BASE}/rate-limits/check", {"resource_type": "x"}, format="json"
    )
    assert response.status_code == status


def test_read_roles_may_dry_run_a_check(client_for):
    response = client_for(["auditor"]).post(
        f"{BASE}/rate-limits/check", {"resource_type": "x", "dry_run": True}, format="json"
    )
    assert response.status_code == 200
