"""Emergency capacity (SPEC 3.3) and this API's own limits (SPEC 1.5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from approvals.models import ApprovalRequest
from ratelimits.models import EmergencyGrant
from receipts.models import Receipt

from .conftest import BASE, NOON, check, make_policy

pytestmark = pytest.mark.django_db


def _grant(client, policy_id: str, **body: object):
    payload = {"extra_requests": 5, "duration_seconds": 600, "reason": "launch"}
    payload.update(body)
    return client.post(f"{BASE}/rate-limits/{policy_id}/emergency-capacity", payload, format="json")


def test_emergency_capacity_applies_now_and_ends_by_itself(
    rl_store, service, admin_client, client_for
):
    architect = client_for(["system_architect"], sub="arch-1")
    with time_machine.travel(NOON, tick=False):
        policy = make_policy(admin_client, limit_value=10)
        response = _grant(architect, policy["policy_id"])
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "active" and body["requires_approval"] is False
        assert body["receipt_id"]
        assert Receipt.objects.filter(gate_id="approval").count() == 1
        assert check(service, dry_run=True).json()["limit_value"] == 15
    with time_machine.travel(NOON + timedelta(seconds=599), tick=False):
        assert check(service, dry_run=True).json()["limit_value"] == 15
    with time_machine.travel(NOON + timedelta(seconds=600), tick=False):
        assert check(service, dry_run=True).json()["limit_value"] == 10


@pytest.mark.parametrize("roles", [["tenant_admin"], ["service"], ["auditor"]])
def test_emergency_capacity_is_system_architect_only(admin_client, client_for, roles):
    policy = make_policy(admin_client)
    assert _grant(client_for(roles), policy["policy_id"]).status_code == 403
    assert EmergencyGrant.objects.count() == 0


def test_emergency_capacity_other_tenant_policy_is_404(admin_client, client_for):
    policy = make_policy(admin_client)
    other = client_for(["system_architect"], tenant="t-globex")
    assert _grant(other, policy["policy_id"]).status_code == 404


@pytest.mark.parametrize("duration", [0, 86_401])
def test_emergency_capacity_duration_bounds(admin_client, client_for, duration):
    policy = make_policy(admin_client)
    architect = client_for(["system_architect"])
    assert _grant(architect, policy["policy_id"], duration_seconds=duration).status_code == 400


def test_emergency_capacity_past_four_hours_waits_for_approval(
    rl_store, service, admin_client, client_for, django_capture_on_commit_callbacks
):
    architect = client_for(["system_architect"], sub="arch-1")
    controller = client_for(["financial_controller"], sub="fc-1")
    with time_machine.travel(NOON, tick=False):
        policy = make_policy(admin_client, limit_value=10)
        response = _grant(architect, policy["policy_id"], duration_seconds=5 * 3600)
        body = response.json()
        assert body["status"] == "pending_approval" and body["requires_approval"] is True
        approval = ApprovalRequest.objects.get(pk=body["approval_id"])
        assert approval.kind == "emergency_capacity"
        assert check(service, dry_run=True).json()["limit_value"] == 10
    start = NOON + timedelta(minutes=30)
    with time_machine.travel(start, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            decided = controller.post(
                f"{BASE}/approvals/{approval.pk}/approve", {"comment": "ok"}, format="json"
            )
        assert decided.status_code == 200, decided.content
        grant = EmergencyGrant.objects.get()
        assert grant.status == "active" and grant.starts_at == start
        assert check(service, dry_run=True).json()["limit_value"] == 15
    with time_machine.travel(start + timedelta(hours=5), tick=False):
        assert check(service, dry_run=True).json()["limit_value"] == 10


# --- this API's own limits -----------------------------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_api_limit_headers_on_every_authenticated_response(admin_client, settings):
    settings.API_RATE_LIMITS = {"default": 3, "rate_limit_check": 2}
    response = admin_client.get(f"{BASE}/rate-limits")
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"default";q=3;w=60'
    assert response["RateLimit"] == '"default";r=2;t=20'
    assert response["X-RateLimit-Limit"] == "3"
    assert response["X-RateLimit-Remaining"] == "2"
    admin_client.get(f"{BASE}/rate-limits")
    admin_client.get(f"{BASE}/rate-limits")
    limited = admin_client.get(f"{BASE}/rate-limits")
    assert limited.status_code == 429
    assert limited.json()["error_code"] == "RATE_LIMIT_VIOLATED"
    assert limited["Retry-After"] == "20"


@time_machine.travel(NOON, tick=False)
def test_api_limit_of_the_check_is_decided_with_the_check(
    rl_store, service, admin_client, settings
):
    settings.API_RATE_LIMITS = {"default": 1000, "rate_limit_check": 2}
    make_policy(admin_client, limit_value=100)
    first = check(service)
    # On the check endpoint the headers describe the checked policy, not this API's limit.
    assert first.json()["allowed"] is True and first["X-RateLimit-Limit"] == "100"
    check(service)
    limited = check(service)
    assert limited.status_code == 429
    assert limited.json()["error_code"] == "RATE_LIMIT_VIOLATED"
    assert limited["Retry-After"] == "30"
    # The refused request consumed nothing of the policy: 2 of 100 used.
    settings.API_RATE_LIMITS = None
    assert check(service, dry_run=True).json()["remaining_requests"] == 97


def test_api_limits_off_adds_no_headers(admin_client, settings):
    settings.API_RATE_LIMITS = None
    response = admin_client.get(f"{BASE}/rate-limits")
    assert "RateLimit" not in response and "X-RateLimit-Limit" not in response
