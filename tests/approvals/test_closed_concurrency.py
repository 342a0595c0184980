"""A rejection racing the expiry job on PostgreSQL (real threads, real row locks): the request
ends once, and the grant waiting on it follows it once."""

from datetime import timedelta

import pytest

from approvals import services
from approvals.exceptions import InvalidTransition
from approvals.models import ApprovalRequest
from budgeting_site.platform.principal import Principal
from ratelimits import services as ratelimits
from ratelimits.models import EmergencyGrant
from receipts.models import Receipt
from tests.budgets.test_concurrency import run_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TENANT = "t-acme"
ARCHITECT = Principal(principal="arch-1", tenant_id=TENANT, roles=frozenset({"system_architect"}))
FC = Principal(principal="fc-1", tenant_id=TENANT, roles=frozenset({"financial_controller"}))


def _waiting(n: int) -> ApprovalRequest:
    policy = ratelimits.policy_create(
        tenant_id=TENANT,
        data={"resource_type": f"llm-{n}", "limit_value": 10, "time_window_seconds": 60},
        actor=ARCHITECT.actor,
    )
    outcome = ratelimits.emergency_capacity_request(
        tenant_id=TENANT,
        policy_id=policy.pk,
        extra_requests=5,
        duration_seconds=5 * 3600,
        reason="launch",
        principal=ARCHITECT,
    )
    return ApprovalRequest.objects.get(pk=outcome.approval_id)


def test_rejections_racing_the_expiry_job_end_each_grant_once():
    approvals = [_waiting(n) for n in range(8)]
    sweep_at = max(a.expires_at for a in approvals) + timedelta(seconds=1)

    def work(i: int) -> object:
        if i == len(approvals):
            return services.expire_approvals(at=sweep_at)
        approval = approvals[i]
        return services.reject(
            tenant_id=TENANT,
            approval_id=approval.pk,
            approver=FC,
            at=approval.expires_at - timedelta(seconds=1),
        )

    *decided, expired = run_threads(len(approvals) + 1, work)
    refused = [r for r in decided if isinstance(r, InvalidTransition)]
    assert all(isinstance(r, ApprovalRequest | InvalidTransition) for r in decided), decided
    assert expired == len(refused)
    assert services.expire_approvals(at=sweep_at) == 0
    receipts = [r.as_dict() for r in Receipt.objects.filter(gate_id="approval")]
    for approval in approvals:
        approval.refresh_from_db()
        grant = EmergencyGrant.objects.get(approval_id=approval.pk)
        assert approval.status in ("rejected", "expired")
        assert (grant.status, grant.starts_at) == (approval.status, None)
        endings = [
            r["result"]["status"]
            for r in receipts
            if r["decision"]["status"] == "hard_block"
            and r["inputs"]["approval_id"] == str(approval.pk)
        ]
        # One for the request's decision, one for the grant's end: never a second of either.
        assert endings == [approval.status, approval.status]
