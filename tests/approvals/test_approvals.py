"""Approval requests (SPEC 2.5): the state machine, who may decide, expiry, receipts,
callbacks, consumption, and the API with its permission matrix."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from approvals import services, tasks
from approvals.exceptions import (
    InvalidTransition,
    NotAnApprover,
    SelfApprovalForbidden,
)
from approvals.models import TRANSITIONS, ApprovalRequest, Status, can_transition
from budgeting_site.platform import clock
from budgeting_site.platform.principal import Principal
from receipts.models import Receipt

pytestmark = pytest.mark.django_db

D = Decimal
TENANT = "t-acme"
OTHER = "t-globex"
NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
PERIOD = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[dict]:
    state = {"now": NOW}
    with clock.override(lambda: state["now"]):
        yield state


def who(sub: str, *roles: str, tenant: str = TENANT) -> Principal:
    return Principal(principal=sub, tenant_id=tenant, roles=frozenset(roles))


FC = who("fc-1", "financial_controller")
ADMIN = who("admin-1", "tenant_admin")


def _request(requester="svc-a", budget_id=None, amount="20", tenant=TENANT, hours=24):
    return services.request_approval(
        tenant_id=tenant,
        kind="budget_overrun",
        requested_by=requester,
        requested_amount=D(amount),
        currency="USD",
        budget_id=budget_id or uuid.UUID(int=1),
        period_start=PERIOD,
        timeout_hours=hours,
    )


def test_the_transition_table():
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        ("pending", "approved"),
        ("pending", "rejected"),
        ("pending", "expired"),
        ("approved", "consumed"),
        ("approved", "expired"),
    }
    for current in Status.values:
        for target in Status.values:
            assert can_transition(current, target) == ((current, target) in allowed)


def test_one_pending_request_per_requester_budget_and_period(frozen):
    first = _request()
    again = _request(amount="99")
    assert first.created is True
    assert again.created is False
    assert again.approval.pk == first.approval.pk
    assert _request(requester="svc-b").created is True
    assert _request(budget_id=uuid.UUID(int=2)).created is True
    assert ApprovalRequest.objects.count() == 3
    assert first.approval.expires_at == NOW + timedelta(hours=24)


def test_approve_records_who_when_why_and_a_receipt(frozen):
    approval = _request().approval
    decided = services.approve(
        tenant_id=TENANT, approval_id=approval.pk, approver=FC, comment="ok for launch"
    )
    assert decided.status == "approved"
    assert decided.approved_amount == D(20)
    assert (decided.decided_by, decided.decided_at, decided.comment) == (
        "fc-1",
        NOW,
        "ok for launch",
    )
    receipt = Receipt.objects.get(gate_id="approval")
    assert receipt.decision_status == "pass"
    body = json.loads(receipt.canonical)
    assert body["result"]["status"] == "approved"
    assert body["actor"]["principal"] == "fc-1"


def test_reject_then_every_other_transition_is_409(frozen):
    approval = _request().approval
    rejected = services.reject(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    assert rejected.status == "rejected"
    with pytest.raises(InvalidTransition):
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    with pytest.raises(InvalidTransition):
        services.reject(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    assert Receipt.objects.filter(gate_id="approval").count() == 1


def test_approving_twice_is_409(frozen):
    approval = _request().approval
    services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    with pytest.raises(InvalidTransition):
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    with pytest.raises(InvalidTransition):
        services.reject(tenant_id=TENANT, approval_id=approval.pk, approver=FC)


def test_the_requester_cannot_decide_their_own_request(frozen):
    approval = _request(requester="fc-1").approval
    with pytest.raises(SelfApprovalForbidden):
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    with pytest.raises(SelfApprovalForbidden):
        services.reject(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    assert ApprovalRequest.objects.get().status == "pending"


def test_tenant_admin_decides_only_when_configured(frozen, settings):
    approval = _request().approval
    with pytest.raises(NotAnApprover):
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=ADMIN)
    settings.APPROVALS_ALLOW_TENANT_ADMIN = True
    assert (
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=ADMIN).status
        == "approved"
    )


def test_expiry_job_expires_pending_and_approved_once(frozen):
    pending = _request(hours=1).approval
    approved = _request(requester="svc-b", hours=1).approval
    services.approve(tenant_id=TENANT, approval_id=approved.pk, approver=FC)
    later = _request(requester="svc-c", hours=5).approval
    frozen["now"] = NOW + timedelta(hours=1)
    assert tasks.expire() == 2
    assert tasks.expire() == 0
    statuses = dict(ApprovalRequest.objects.values_list("pk", "status"))
    assert statuses == {pending.pk: "expired", approved.pk: "expired", later.pk: "pending"}
    expired_receipts = [
        r
        for r in Receipt.objects.filter(gate_id="approval")
        if json.loads(r.canonical)["result"]["status"] == "expired"
    ]
    assert len(expired_receipts) == 2


def test_an_expired_request_cannot_be_approved_and_a_new_one_can_be_made(frozen):
    approval = _request(hours=1).approval
    frozen["now"] = NOW + timedelta(hours=1)
    with pytest.raises(InvalidTransition):
        services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    fresh = _request(hours=1)
    assert fresh.created is True
    assert ApprovalRequest.objects.get(pk=approval.pk).status == "expired"


def test_consume_is_once_and_only_for_its_requester_budget_and_amount(frozen):
    approval = _request(amount="20").approval
    assert not services.consume_approval(
        tenant_id=TENANT, approval_id=approval.pk, requested_by="svc-a", amount=D(5)
    )  # still pending
    services.approve(tenant_id=TENANT, approval_id=approval.pk, approver=FC)
    common = {"tenant_id": TENANT, "approval_id": approval.pk}
    assert not services.consume_approval(**common, requested_by="svc-x", amount=D(5))
    assert not services.consume_approval(**common, requested_by="svc-a", amount=D(21))
    assert not services.consume_approval(
        **common, requested_by="svc-a", amount=D(5), budget_id=uuid.UUID(int=9)
    )
    assert not services.consume_approval(
        tenant_id=OTHER, approval_id=approval.pk, requested_by="svc-a", amount=D(5)
    )
    assert services.consume_approval(**common, requested_by="svc-a", amount=D(20))
    assert not services.consume_approval(**common, requested_by="svc-a", amount=D(20))
    assert ApprovalRequest.objects.get().status == "consumed"


def _capacity_request(policy: int) -> ApprovalRequest:
    return services.request_approval(
        tenant_id=TENANT,
        kind="emergency_capacity",
        requested_by="architect-1",
        requested_amount=D(10),
        policy_id=uuid.UUID(int=policy),
    ).approval


def test_on_approved_callbacks_run_in_the_same_transaction(frozen, monkeypatch):
    seen = []
    monkeypatch.setattr(services, "_ON_APPROVED", {})
    services.register_on_approved("emergency_capacity", seen.append)
    services.register_on_approved("emergency_capacity", seen.append)  # registered once
    request = services.request_approval(
        tenant_id=TENANT,
        kind="emergency_capacity",
        requested_by="architect-1",
        requested_amount=D(500),
        policy_id=uuid.UUID(int=7),
        details={"extra_requests": 500, "duration_seconds": 36000, "reason": "launch"},
    )
    assert request.approval.subject == f"policy:{uuid.UUID(int=7)}"
    services.approve(tenant_id=TENANT, approval_id=request.approval.pk, approver=FC)
    assert [a.pk for a in seen] == [request.approval.pk]

    def boom(_approval):
        raise RuntimeError("grant failed")

    monkeypatch.setattr(services, "_ON_APPROVED", {"emergency_capacity": [boom]})
    other = _capacity_request(policy=8)
    with pytest.raises(RuntimeError):
        services.approve(tenant_id=TENANT, approval_id=other.pk, approver=FC)
    assert ApprovalRequest.objects.get(pk=other.pk).status == "pending"


def test_closed_callbacks_run_on_reject_and_expiry_in_the_same_transaction(frozen, monkeypatch):
    seen: list[tuple[str, str, str]] = []

    def record(approval, actor):
        seen.append((str(approval.pk), approval.status, actor["principal"]))

    monkeypatch.setattr(services, "_ON_CLOSED", {})
    services.register_on_closed("budget_overrun", record)
    services.register_on_closed("budget_overrun", record)  # registered once
    with pytest.raises(ValueError):
        services.register_on_closed("nope", record)
    rejected = _request().approval
    approved = _request(requester="svc-b").approval
    waiting = _request(requester="svc-c").approval
    services.reject(tenant_id=TENANT, approval_id=rejected.pk, approver=FC)
    services.approve(tenant_id=TENANT, approval_id=approved.pk, approver=FC)
    assert seen == [(str(rejected.pk), "rejected", "fc-1")]
    frozen["now"] = NOW + timedelta(hours=24)
    assert tasks.expire() == 2
    assert tasks.expire() == 0
    # An approved request that expires unused is closed too; its callback decides what to do.
    assert sorted(seen[1:]) == sorted(
        [
            (str(approved.pk), "expired", "system:approvals.expire"),
            (str(waiting.pk), "expired", "system:approvals.expire"),
        ]
    )

    def boom(_approval, _actor):
        raise RuntimeError("subject failed")

    monkeypatch.setattr(services, "_ON_CLOSED", {"budget_overrun": [boom]})
    other = _request(requester="svc-d").approval
    unaffected = _capacity_request(policy=8)
    receipts = Receipt.objects.count()
    with pytest.raises(RuntimeError):
        services.reject(tenant_id=TENANT, approval_id=other.pk, approver=FC)
    assert ApprovalRequest.objects.get(pk=other.pk).status == "pending"
    assert Receipt.objects.count() == receipts
    # The expiry job rolls back the failing one, logs it, and goes on with the others.
    frozen["now"] = NOW + timedelta(hours=48)
    assert tasks.expire() == 1
    assert ApprovalRequest.objects.get(pk=other.pk).status == "pending"
    assert ApprovalRequest.objects.get(pk=unaffected.pk).status == "expired"
    assert Receipt.objects.count() == receipts + 1


# --- The API --------------------------------------------------------------------------------

A = "/budget/v1/approvals"


def _client(auth, roles, sub="fc-1", tenant=TENANT):
    with clock.override(timezone.now):
        return auth(APIClient(), tenant, list(roles), sub=sub)


def test_list_filters_and_detail(frozen, auth):
    first = _request().approval
    second = _request(requester="svc-b").approval
    services.reject(tenant_id=TENANT, approval_id=second.pk, approver=FC)
    _request(tenant=OTHER)
    client = _client(auth, ["auditor"], sub="aud-1")
    body = client.get(A).json()
    assert body["pagination"]["total_count"] == 2
    assert {a["approval_id"] for a in body["approvals"]} == {str(first.pk), str(second.pk)}
    pending = client.get(f"{A}?status=pending").json()["approvals"]
    assert [a["approval_id"] for a in pending] == [str(first.pk)]
    assert client.get(f"{A}?kind=emergency_capacity").json()["approvals"] == []
    assert client.get(f"{A}?status=nope").status_code == 400
    detail = client.get(f"{A}/{first.pk}").json()
    assert detail["status"] == "pending"
    assert detail["requested_amount"] == 20
    assert detail["requested_by"] == "svc-a"
    assert client.get(f"{A}/bad-id").status_code == 400


def test_approve_and_reject_over_http(frozen, auth):
    one = _request().approval
    two = _request(requester="svc-b").approval
    client = _client(auth, ["financial_controller"])
    approved = client.post(
        f"{A}/{one.pk}/approve", {"comment": "fine", "approved_amount": "15.5"}, format="json"
    )
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    assert approved.json()["approved_amount"] == 15.5
    assert client.post(f"{A}/{one.pk}/approve", {}, format="json").status_code == 409
    assert (
        client.post(f"{A}/{two.pk}/reject", {"comment": "no"}, format="json").json()["status"]
        == "rejected"
    )
    bad = client.post(f"{A}/{two.pk}/approve", {"approved_amount": -1}, format="json")
    assert bad.status_code == 400
    unknown = client.post(f"{A}/{two.pk}/reject", {"why": "x"}, format="json")
    assert unknown.status_code == 400


def test_self_approval_over_http_is_403(frozen, auth):
    mine = _request(requester="fc-1").approval
    client = _client(auth, ["financial_controller"], sub="fc-1")
    response = client.post(f"{A}/{mine.pk}/approve", {}, format="json")
    assert response.status_code == 403
    assert ApprovalRequest.objects.get().status == "pending"


@pytest.mark.parametrize(
    ("method", "suffix", "allowed"),
    [
        ("get", "", {"tenant_admin", "financial_controller", "auditor"}),
        ("get", "/{id}", {"tenant_admin", "financial_controller", "auditor"}),
        ("post", "/{id}/approve", {"financial_controller"}),
        ("post", "/{id}/reject", {"financial_controller"}),
    ],
)
def test_permission_matrix(frozen, auth, method, suffix, allowed):
    mine = _request().approval
    theirs = _request(tenant=OTHER).approval
    roles = (
        "tenant_admin",
        "financial_controller",
        "auditor",
        "tenant_user",
        "system_architect",
        "service",
    )

    def call(client, approval):
        path = A + suffix.format(id=approval.pk)
        if method == "get":
            return client.get(path)
        return client.post(path, {}, format="json")

    assert call(APIClient(), mine).status_code == 401
    for role in roles:
        if role not in allowed:
            assert call(_client(auth, [role], sub="x-1"), mine).status_code == 403, role
    right = _client(auth, [sorted(allowed)[0]], sub="x-1")
    if suffix:
        assert call(right, theirs).status_code == 404
    assert call(right, mine).status_code == 200
    if method == "get" and not suffix:
        assert right.get(f"{A}?tenant_id={OTHER}").status_code == 403


def test_tenant_admin_over_http_when_configured(frozen, auth, settings):
    approval = _request().approval
    client = _client(auth, ["tenant_admin"], sub="admin-1")
    assert client.post(f"{A}/{approval.pk}/approve", {}, format="json").status_code == 403
    settings.APPROVALS_ALLOW_TENANT_ADMIN = True
    assert client.post(f"{A}/{approval.pk}/approve", {}, format="json").status_code == 200
