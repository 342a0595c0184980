"""Budgets in the admin: definitions written through the same services as the API, holds that
can be released, and read-only ledgers (period counters, spending, threshold signals)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnly
from budgeting_site.platform.errors import DomainError
from budgets import services
from budgets.models import (
    Budget,
    BudgetPeriod,
    BudgetSignal,
    HoldLine,
    Reservation,
    SpendEntry,
    default_notifications,
    default_thresholds,
)

READ = ROLE_TABLE["budgets"].read
WRITE = ROLE_TABLE["budgets"].write
HOLDS = ROLE_TABLE["budgets"].special["holds"]

FIELDS = [
    "budget_name",
    "budget_type",
    "budget_amount",
    "currency",
    "period_type",
    "start_date",
    "end_date",
    "allocated_to_type",
    "allocated_to_id",
    "enforcement_action",
    "thresholds",
    "notifications",
    "approval_timeout_hours",
]


class BudgetForm(forms.ModelForm):
    """Validated and saved by the budget services in `clean`, so the admin's rules are the
    API's rules (overlap 409, version precondition, immutable target) shown as form errors."""

    version_seen = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Budget
        fields = ["tenant_id", *FIELDS]

    request: HttpRequest | None = None
    model_admin: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["version_seen"].initial = self.instance.version
        else:
            self.fields["thresholds"].initial = default_thresholds()
            self.fields["notifications"].initial = default_notifications()
        for name in ("budget_type", "allocated_to_id", "end_date", "start_date"):
            if name in self.fields:
                self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors or self.request is None:
            return cleaned
        data = {name: cleaned.get(name) for name in FIELDS if name in cleaned}
        try:
            if not self.instance._state.adding:
                tenant_id = self.instance.tenant_id
                self.model_admin.require_roles(self.request, WRITE, tenant_id)
                saved = services.update_budget(
                    tenant_id=tenant_id,
                    budget_id=self.instance.pk,
                    data=data,
                    version=cleaned.get("version_seen") or self.instance.version,
                    actor=self.model_admin.principal(self.request, tenant_id),
                )
            else:
                tenant_id = cleaned["tenant_id"]
                self.model_admin.require_roles(self.request, WRITE, tenant_id)
                saved = services.create_budget(
                    tenant_id=tenant_id,
                    data=data,
                    actor=self.model_admin.principal(self.request, tenant_id),
                )
        except DomainError as exc:
            raise forms.ValidationError(f"{exc.message} {exc.details or ''}".strip()) from exc
        self.saved = saved
        return cleaned


@admin.register(Budget)
class BudgetAdmin(TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    change_roles = WRITE
    form = BudgetForm
    list_display = [
        "budget_name",
        "tenant_id",
        "allocated_to_type",
        "allocated_to_id",
        "budget_amount",
        "currency",
        "period_type",
        "enforcement_action",
        "version",
        "deleted_at",
    ]
    list_filter = ["enforcement_action", "period_type", "allocated_to_type", "tenant_id"]
    search_fields = ["budget_name", "=allocated_to_id", "=id", "=tenant_id"]
    readonly_fields = ["id", "version", "created_at", "created_by", "updated_at", "deleted_at"]
    actions = ["soft_delete"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = ["tenant_id", "allocated_to_type", "allocated_to_id", "period_type"]
        return [*self.readonly_fields, *(fixed if obj is not None else [])]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type("BoundBudgetForm", (form,), {"request": request, "model_admin": self})

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        # The service already wrote it in the form's clean(); point the admin at that row.
        obj.pk = form.saved.pk
        obj.version = form.saved.version

    def has_write_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, WRITE)

    @admin.action(description="Delete selected budgets (kept for history)", permissions=["write"])
    def soft_delete(self, request: HttpRequest, queryset: Any) -> None:
        done = 0
        for budget in self.scope(request, queryset, WRITE).filter(deleted_at__isnull=True):
            try:
                services.delete_budget(
                    tenant_id=budget.tenant_id,
                    budget_id=budget.pk,
                    force=False,
                    actor=self.principal(request, budget.tenant_id),
                )
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{budget}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Deleted {done} budgets")


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = [
        "budget",
        "tenant_id",
        "period_start",
        "period_end",
        "budget_amount",
        "spent_amount",
        "reserved_amount",
        "signals",
    ]
    list_filter = ["tenant_id"]
    list_select_related = ["budget"]
    search_fields = ["=budget__id", "budget__budget_name"]
    show_full_result_count = False


class HoldLineInline(ReadOnly, admin.TabularInline):
    model = HoldLine
    fields = ["budget", "period", "amount", "active"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Reservation)
class ReservationAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = [
        "id",
        "tenant_id",
        "status",
        "estimated_cost",
        "currency",
        "actual_cost",
        "created_at",
        "expires_at",
        "expiry_outcome",
    ]
    list_filter = ["status", "tenant_id"]
    search_fields = ["=id", "=record_id"]
    show_full_result_count = False
    fields = [f.name for f in Reservation._meta.concrete_fields]
    readonly_fields = fields
    inlines = [HoldLineInline]
    actions = ["release"]

    def has_hold_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, HOLDS)

    @admin.action(description="Release selected open holds", permissions=["hold"])
    def release(self, request: HttpRequest, queryset: Any) -> None:
        done = 0
        for reservation in self.scope(request, queryset, HOLDS).filter(status="active"):
            try:
                services.release_reservation(
                    tenant_id=reservation.tenant_id,
                    reservation_id=reservation.pk,
                    actor=self.principal(request, reservation.tenant_id).actor,
                )
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{reservation.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Released {done} holds")


@admin.register(SpendEntry)
class SpendEntryAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = ["at", "tenant_id", "budget", "kind", "amount", "record_id", "reservation_id"]
    list_filter = ["kind", "tenant_id"]
    list_select_related = ["budget"]
    search_fields = ["=record_id", "=reservation_id", "=budget__id"]
    show_full_result_count = False


@admin.register(BudgetSignal)
class BudgetSignalAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = ["created_at", "tenant_id", "budget", "period_start", "kind", "value"]
    list_filter = ["kind", "tenant_id"]
    list_select_related = ["budget"]
    search_fields = ["=budget__id"]
