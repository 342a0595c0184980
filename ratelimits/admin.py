"""Rate limits in the admin: policies edited through the same services as the API, grants and
the database store's usage as read-only ledgers."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest

from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnly
from budgeting_site.platform.errors import DomainError
from ratelimits import services
from ratelimits.api.serializers import MAX_LIMIT_VALUE, MAX_WINDOW_SECONDS
from ratelimits.engine.effective import exactness_problem, validate_overrides
from ratelimits.models import EmergencyGrant, RateLimitPolicy, RateLimitUsage

READ = ROLE_TABLE["ratelimits"].read
WRITE = ROLE_TABLE["ratelimits"].write
EMERGENCY = ROLE_TABLE["ratelimits"].special["emergency_capacity"]


class PolicyForm(forms.ModelForm):
    class Meta:
        model = RateLimitPolicy
        fields = [*services.POLICY_FIELDS, "tenant_id"]

    def clean_overrides(self) -> Any:
        value = self.cleaned_data.get("overrides") or {}
        errors = validate_overrides(value)
        if errors:
            raise forms.ValidationError([f"{k}: {v}" for k, v in errors.items()])
        return value

    def clean(self) -> dict[str, Any]:
        # The same bounds as the API's (SPEC 8: the admin writes through the same rules).
        data: dict[str, Any] = super().clean() or {}
        limit, window = data.get("limit_value"), data.get("time_window_seconds")
        algorithm = data.get("algorithm")
        if limit is None or window is None or not algorithm or "overrides" not in data:
            return data
        if limit > MAX_LIMIT_VALUE:
            self.add_error("limit_value", f"at most {MAX_LIMIT_VALUE}")
        elif window > MAX_WINDOW_SECONDS:
            self.add_error("time_window_seconds", f"at most {MAX_WINDOW_SECONDS}")
        elif (data.get("burst_capacity") or 0) > MAX_LIMIT_VALUE:
            self.add_error("burst_capacity", f"at most {MAX_LIMIT_VALUE}")
        elif algorithm == "sliding_window_log" and limit > settings.RATELIMIT_SLIDING_LOG_MAX:
            self.add_error(
                "limit_value", f"at most {settings.RATELIMIT_SLIDING_LOG_MAX} for a sliding log"
            )
        else:
            problem = exactness_problem(
                limit_value=limit,
                time_window_seconds=window,
                algorithm=algorithm,
                burst_capacity=data.get("burst_capacity") or 0,
                overrides=data.get("overrides"),
            )
            if problem is not None:
                self.add_error("limit_value", problem)
        return data


class GrantInline(ReadOnly, admin.TabularInline):
    model = EmergencyGrant
    fields = ["extra_requests", "duration_seconds", "status", "starts_at", "ends_at", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(RateLimitPolicy)
class PolicyAdmin(TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    change_roles = WRITE
    form = PolicyForm
    list_display = [
        "__str__",
        "tenant_id",
        "scope_type",
        "scope_id",
        "resource_type",
        "algorithm",
        "limit_value",
        "time_window_seconds",
        "mode",
        "fail_mode",
        "enabled",
        "version",
    ]
    list_filter = ["algorithm", "mode", "fail_mode", "enabled", "scope_type", "tenant_id"]
    search_fields = ["=id", "policy_name", "resource_type", "scope_id", "=tenant_id"]
    readonly_fields = ["version", "usage_factor", "created_at", "updated_at", "created_by"]
    inlines = [GrantInline]

    def save_model(
        self, request: HttpRequest, obj: RateLimitPolicy, form: Any, change: bool
    ) -> None:
        self.require_roles(request, WRITE, obj.tenant_id)
        actor = self.principal(request, obj.tenant_id).actor
        data = {
            name: form.cleaned_data[name]
            for name in services.POLICY_FIELDS
            if name in form.cleaned_data
        }
        try:
            if change:
                saved = services.policy_update(
                    tenant_id=obj.tenant_id,
                    policy_id=obj.pk,
                    data=data,
                    expected_version=None,
                    actor=actor,
                )
            else:
                saved = services.policy_create(tenant_id=obj.tenant_id, data=data, actor=actor)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = saved.pk
        obj.version = saved.version

    def delete_model(self, request: HttpRequest, obj: RateLimitPolicy) -> None:
        self.require_roles(request, WRITE, obj.tenant_id)
        services.policy_delete(
            tenant_id=obj.tenant_id,
            policy_id=obj.pk,
            actor=self.principal(request, obj.tenant_id).actor,
        )

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in self.scope(request, queryset, WRITE):
            self.delete_model(request, obj)


@admin.register(EmergencyGrant)
class GrantAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = ["created_at", "tenant_id", "policy", "extra_requests", "status", "ends_at"]
    list_filter = ["status", "tenant_id"]
    search_fields = ["=id", "=policy__id", "=tenant_id"]
    readonly_fields = [
        "id",
        "tenant_id",
        "policy",
        "extra_requests",
        "duration_seconds",
        "reason",
        "status",
        "approval_id",
        "requested_by",
        "created_at",
        "starts_at",
        "ends_at",
    ]
    fields = readonly_fields


@admin.register(RateLimitUsage)
class UsageAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    """The database store's counters (the embedded default), for inspection."""

    view_roles = READ
    list_display = ["tenant_id", "key", "count", "level", "expires_at_ms"]
    list_filter = ["tenant_id"]
    search_fields = ["key", "=tenant_id"]
    readonly_fields = [
        "tenant_id",
        "key",
        "window_start_ms",
        "count",
        "level",
        "unit",
        "updated_ms",
        "entries",
        "expires_at_ms",
    ]
    fields = readonly_fields
