"""Approval requests in the admin: read-only rows, decided by actions that call the same
services as the API and the approval pages."""

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from approvals import services
from approvals.models import ApprovalRequest
from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin, approver_roles
from budgeting_site.platform.errors import DomainError

READ = ROLE_TABLE["approvals"].read


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = [
        "created_at",
        "tenant_id",
        "kind",
        "status",
        "requested_amount",
        "approved_amount",
        "currency",
        "requested_by",
        "decided_by",
        "expires_at",
    ]
    list_filter = ["status", "kind", "tenant_id"]
    search_fields = ["=id", "=budget_id", "=policy_id", "requested_by"]
    show_full_result_count = False
    fields = [
        "id",
        "tenant_id",
        "kind",
        "status",
        "budget_id",
        "policy_id",
        "period_start",
        "requested_amount",
        "approved_amount",
        "currency",
        "requested_by",
        "decided_by",
        "decided_at",
        "comment",
        "details",
        "created_at",
        "expires_at",
        "consumed_at",
        "consumed_by",
    ]
    readonly_fields = fields
    actions = ["approve_selected", "reject_selected"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, approver_roles())

    def _decide(self, request: HttpRequest, queryset: Any, approve: bool) -> None:
        done = 0
        for approval in self.scope(request, queryset, approver_roles()):
            approver = self.principal(request, approval.tenant_id)
            try:
                if approve:
                    services.approve(
                        tenant_id=approval.tenant_id,
                        approval_id=approval.pk,
                        approver=approver,
                        comment="approved in the admin",
                    )
                else:
                    services.reject(
                        tenant_id=approval.tenant_id,
                        approval_id=approval.pk,
                        approver=approver,
                        comment="rejected in the admin",
                    )
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{approval.pk}: {exc.message}", messages.WARNING)
        verb = "Approved" if approve else "Rejected"
        self.message_user(request, f"{verb} {done} requests")

    @admin.action(description="Approve selected requests", permissions=["decide"])
    def approve_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected requests", permissions=["decide"])
    def reject_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, approve=False)
