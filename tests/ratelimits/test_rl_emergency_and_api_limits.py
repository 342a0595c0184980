"""Emergency capacity (SPEC 3.3) and this API's own limits (SPEC 1.5)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

from approvals import tasks
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


def _waiting_grant(architect, admin_client, *, limit_value: int = 10) -> tuple[dict, str]:
    """A policy and a grant past 4 h waiting for its approval, made at NOON."""
    policy = make_policy(admin_client, limit_value=limit_value)
    body = _grant(architect, policy["policy_id"], duration_seconds=5 * 3600).json()
    assert body["status"] == "pending_approval"
    return policy, body["approval_id"]


def _decide(controller, approval_id: str, verb: str, at: datetime, capture) -> None:
    """The controller approves or rejects at `at`, running the after-commit work."""
    with time_machine.travel(at, tick=False), capture(execute=True):
        decided = controller.post(f"{BASE}/approvals/{approval_id}/{verb}", {}, format="json")
    assert decided.status_code == 200, decided.content


def _grant_receipts(status: str) -> list[dict]:
    """The signed receipts of grants that ended as `status`."""
    receipts = [r.as_dict() for r in Receipt.objects.filter(gate_id="approval")]
    return [
        r
        for r in receipts
        if "grant_id" in r["result"] and r["decision"]["badges"] == ["emergency_capacity", status]
    ]


@pytest.fixture
def waiting_approval(admin_client, client_for) -> str:
    """The approval id of a grant past 4 h made at NOON by arch-1, waiting for its approval."""
    with time_machine.travel(NOON, tick=False):
        _, approval_id = _waiting_grant(
            client_for(["system_architect"], sub="arch-1"), admin_client
        )
    return approval_id


def test_rejected_approval_rejects_the_grant_and_it_never_applies(
    rl_store, service, client_for, waiting_approval, django_capture_on_commit_callbacks
):
    controller = client_for(["financial_controller"], sub="fc-1")
    approval_id = waiting_approval
    _decide(
        controller,
        approval_id,
        "reject",
        NOON + timedelta(minutes=30),
        django_capture_on_commit_callbacks,
    )
    with time_machine.travel(NOON + timedelta(minutes=30), tick=False):
        grant = EmergencyGrant.objects.get()
        assert (grant.status, grant.starts_at, grant.ends_at) == ("rejected", None, None)
        assert check(service, dry_run=True).json()["limit_value"] == 10
        # The approval can no longer be approved, so the grant can never start.
        late = controller.post(f"{BASE}/approvals/{approval_id}/approve", {}, format="json")
        assert late.status_code == 409
        assert EmergencyGrant.objects.get().status == "rejected"
    (receipt,) = _grant_receipts("rejected")
    assert receipt["decision"]["status"] == "hard_block"
    assert receipt["result"]["grant_id"] == str(grant.pk)
    assert receipt["result"]["status"] == "rejected"
    assert receipt["actor"]["principal"] == "fc-1"
    with time_machine.travel(NOON + timedelta(hours=2), tick=False):
        assert check(service, dry_run=True).json()["limit_value"] == 10


def test_expiry_job_expires_the_waiting_grant_once(rl_store, service, waiting_approval):
    with time_machine.travel(NOON + timedelta(hours=24), tick=False):
        assert tasks.expire() == 1
        assert tasks.expire() == 0
        grant = EmergencyGrant.objects.get()
        assert (grant.status, grant.starts_at) == ("expired", None)
        assert ApprovalRequest.objects.get().status == "expired"
        assert check(service, dry_run=True).json()["limit_value"] == 10
    (receipt,) = _grant_receipts("expired")
    assert receipt["decision"]["status"] == "hard_block"
    assert receipt["actor"]["principal"] == "system:approvals.expire"


def test_a_repeat_past_the_timeout_expires_the_old_grant_and_waits_anew(admin_client, client_for):
    architect = client_for(["system_architect"], sub="arch-1")
    with time_machine.travel(NOON, tick=False):
        policy, first_approval = _waiting_grant(architect, admin_client)
    with time_machine.travel(NOON + timedelta(hours=25), tick=False):
        again = _grant(architect, policy["policy_id"], duration_seconds=5 * 3600).json()
    assert again["status"] == "pending_approval" and again["approval_id"] != first_approval
    statuses = dict(EmergencyGrant.objects.values_list("approval_id", "status"))
    assert {str(k): v for k, v in statuses.items()} == {
        first_approval: "expired",
        again["approval_id"]: "pending_approval",
    }


def test_an_approved_grant_is_untouched_when_its_approval_expires(
    rl_store, service, client_for, waiting_approval, django_capture_on_commit_callbacks
):
    controller = client_for(["financial_controller"], sub="fc-1")
    start = NOON + timedelta(hours=20)
    _decide(controller, waiting_approval, "approve", start, django_capture_on_commit_callbacks)
    # The approval expires 24 h after it was made; the grant runs its own 5 h.
    with time_machine.travel(NOON + timedelta(hours=24), tick=False):
        assert tasks.expire() == 1
        grant = EmergencyGrant.objects.get()
        assert (grant.status, grant.ends_at) == ("active", start + timedelta(hours=5))
        assert check(service, dry_run=True).json()["limit_value"] == 15
        assert _grant_receipts("expired") == []


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
