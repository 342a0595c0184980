"""The operators' view of quotas (SPEC 8): read-only rows scoped by tenant membership;
"renew now" calls the same renewal service as the scheduled job."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnly
from budgeting_site.platform.errors import DomainError
from quotas import services
from quotas.models import Quota, QuotaUsage

ROLES = ROLE_TABLE["quotas"]


@admin.register(Quota)
class QuotaAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = ROLES.read
    list_display = [
        "quota_id",
        "tenant_id",
        "resource_type",
        "allocation_type",
        "allocated_to_id",
        "allocated_amount",
        "used_amount",
        "max_burst_amount",
        "period_start",
        "period_end",
        "auto_renew",
        "renewal_strategy",
        "renewal_attempts",
        "deleted_at",
    ]
    list_filter = ["tenant_id", "allocation_type", "auto_renew", "renewal_strategy"]
    search_fields = ["quota_id", "resource_type", "allocated_to_id"]
    date_hierarchy = "period_start"
    ordering = ["-created_at"]
    actions = ["renew_now"]

    def has_renew_permission(self, request: HttpRequest) -> bool:
        return bool(self.has_roles(request, ROLES.write))

    @admin.action(description="Renew now (create the next period)", permissions=["renew"])
    def renew_now(self, request: HttpRequest, queryset: QuerySet[Quota]) -> None:
        renewed = 0
        for quota in self.scope(request, queryset, ROLES.write):
            actor = self.principal(request, quota.tenant_id).actor
            try:
                successor = services.renew_quota(quota_id=quota.pk, actor=actor, force=True)
            except DomainError as exc:
                self.message_user(request, f"{quota.pk}: {exc.message}", messages.ERROR)
                continue
            except Exception as exc:  # an operator's action: report it, never a 500 page
                self.message_user(request, f"{quota.pk}: {type(exc).__name__}", messages.ERROR)
                continue
            if successor is None:
                self.message_user(
                    request, f"{quota.pk}: already renewed or deleted", messages.WARNING
                )
            else:
                renewed += 1
        if renewed:
            self.message_user(request, f"Renewed {renewed} quota(s).", messages.SUCCESS)


@admin.register(QuotaUsage)
class QuotaUsageAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = ROLES.read
    list_display = [
        "created_at",
        "tenant_id",
        "quota_id",
        "resource_type",
        "amount",
        "used_after",
        "operation_type",
        "resource_id",
        "principal",
        "receipt_id",
    ]
    list_filter = ["tenant_id", "resource_type"]
    search_fields = ["quota_id", "resource_id", "operation_type", "correlation_id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    show_full_result_count = False  # no second COUNT(*) over a large ledger
