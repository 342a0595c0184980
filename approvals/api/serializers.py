from typing import Any

from rest_framework import serializers

from approvals.models import ApprovalRequest, Kind, Status
from budgeting_site.platform.serializers import MoneyField, StrictSerializer


class ListQuery(StrictSerializer):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False)
    page = serializers.CharField(required=False)
    page_size = serializers.CharField(required=False)
    tenant_id = serializers.CharField(required=False)


class ApproveInput(StrictSerializer):
    server_owned = frozenset({"tenant_id"})
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    approved_amount = MoneyField(required=False, min_value=0)


class RejectInput(StrictSerializer):
    server_owned = frozenset({"tenant_id"})
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)


def render_approval(approval: ApprovalRequest) -> dict[str, Any]:
    return {
        "approval_id": approval.pk,
        "tenant_id": approval.tenant_id,
        "kind": approval.kind,
        "budget_id": approval.budget_id,
        "policy_id": approval.policy_id,
        "status": approval.status,
        "requested_amount": approval.requested_amount,
        "approved_amount": approval.approved_amount,
        "currency": approval.currency or None,
        "requested_by": approval.requested_by,
        "decided_by": approval.decided_by or None,
        "comment": approval.comment,
        "details": approval.details,
        "period_start": approval.period_start,
        "expires_at": approval.expires_at,
        "created_at": approval.created_at,
        "decided_at": approval.decided_at,
        "consumed_at": approval.consumed_at,
    }
