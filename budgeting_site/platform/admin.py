from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from budgeting_site.platform import services
from budgeting_site.platform.admin_scoping import TenantScopedAdmin, r
from budgeting_site.platform.models import ROLE_CHOICES, ApiKey, AuditLogEntry, TenantMembership
from budgeting_site.platform.permissions import AUDITOR, TENANT_ADMIN


class ApiKeyCreateForm(forms.ModelForm):
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["tenant_id", "name", "roles"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin, admin.ModelAdmin):
    # A tenant's admins issue and revoke its keys; operators (superusers) any tenant's.
    view_roles = r(TENANT_ADMIN)
    change_roles = r(TENANT_ADMIN)
    list_display = [
        "name",
        "tenant_id",
        "prefix",
        "roles",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at", "tenant_id"]  # a scoped tenant filter: see TenantScopedAdmin
    search_fields = ["name", "tenant_id", "prefix"]
    actions = ["revoke"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [
            "tenant_id",
            "name",
            "prefix",
            "roles",
            "created_at",
            "created_by",
            "last_used_at",
            "revoked_at",
        ]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["tenant_id", "name", "roles"]
        return self.get_readonly_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        self.require_roles(request, self.change_roles, form.cleaned_data["tenant_id"])
        key, plaintext = services.create_api_key(
            tenant_id=form.cleaned_data["tenant_id"],
            name=form.cleaned_data["name"],
            roles=list(form.cleaned_data["roles"]),
            created_by=f"user:{request.user.get_username()}",
        )
        obj.pk = key.pk
        messages.warning(
            request, f"API key created. Copy it now; it will not be shown again: {plaintext}"
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        queryset = self.scope(request, queryset, self.change_roles)
        for key in queryset:
            services.revoke_api_key(key_id=key.pk, revoked_by=f"user:{request.user.get_username()}")
        self.message_user(request, f"Revoked {queryset.count()} key(s)")


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(TenantScopedAdmin, admin.ModelAdmin):
    # Read-only. Sign-in attempts carry no tenant: only superusers see them.
    view_roles = r(TENANT_ADMIN, AUDITOR)
    list_display = ["at", "action", "principal", "tenant_id", "target_tenant_id", "path"]
    list_filter = ["action"]
    search_fields = ["principal", "tenant_id", "target_tenant_id", "correlation_id"]
    show_full_result_count = False  # no second COUNT(*) over a large log
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipForm(forms.ModelForm):
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = TenantMembership
        fields = ["user", "tenant_id", "roles"]


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "tenant_id", "roles", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "tenant_id"]

    def save_model(self, request: HttpRequest, obj: TenantMembership, form: Any, change: bool):
        saved = services.set_membership(
            user=form.cleaned_data["user"],
            tenant_id=form.cleaned_data["tenant_id"],
            roles=list(form.cleaned_data["roles"]),
        )
        obj.pk = saved.pk
