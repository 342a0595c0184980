"""Costs in the admin: the operators' unit price and FX rate tables (written through the same
services as everything else), and read-only ledgers (cost records, rollups, allocations,
amortization slices, anomalies). Records are corrected by reversal, never edited."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin, is_superuser
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnly
from budgeting_site.platform.errors import DomainError
from costs import services
from costs.models import (
    AmortizationSlice,
    CostAllocation,
    CostAnomaly,
    CostDailyRollup,
    CostRecord,
    FxRate,
    UnitPrice,
)

READ = ROLE_TABLE["costs"].read
CORRECT = frozenset({"tenant_admin", "financial_controller"})


def fixed_filter(field: str, title: str, values: list[str]) -> type[admin.SimpleListFilter]:
    """A filter with fixed choices: no SELECT DISTINCT over a ledger of millions of rows."""

    class Filter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(v, v) for v in values]

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            value = self.value()
            if value is None:
                return queryset
            if field == "counted":
                return queryset.filter(counted=value == "yes")
            return queryset.filter(**{field: value})

    Filter.title = title
    return Filter


# --- Reference tables: operators (superusers) keep them ---------------------------------------


class OperatorTable:
    """Append-only effective-dated rows: a new price or rate is a new row with its own
    `effective_from`; rows are not edited, so past costs stay explainable."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass  # saved by the service in the form's clean()


class SavedByService(forms.ModelForm):
    """A form whose row is written by a service in `clean()` (`write`), so that a domain
    error shows on the form and the admin saves nothing itself."""

    def write(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.instance = self.write(data)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data


class UnitPriceForm(SavedByService):
    class Meta:
        model = UnitPrice
        fields = [
            "tenant_id",
            "resource_type",
            "usage_unit",
            "unit_price",
            "currency",
            "effective_from",
        ]

    def write(self, data: dict[str, Any]) -> UnitPrice:
        return services.set_unit_price(
            tenant_id=data.get("tenant_id") or "",
            resource_type=data["resource_type"],
            usage_unit=data.get("usage_unit") or "",
            unit_price=data["unit_price"],
            currency=data.get("currency") or "USD",
            effective_from=data["effective_from"],
        )


@admin.register(UnitPrice)
class UnitPriceAdmin(OperatorTable, admin.ModelAdmin):
    form = UnitPriceForm
    list_display = [
        "resource_type",
        "usage_unit",
        "unit_price",
        "currency",
        "effective_from",
        "tenant_id",
    ]
    list_filter = ["currency"]
    search_fields = ["resource_type", "tenant_id"]
    ordering = ["resource_type", "-effective_from"]


class FxRateForm(SavedByService):
    class Meta:
        model = FxRate
        fields = ["tenant_id", "base_currency", "quote_currency", "rate", "effective_from"]

    def write(self, data: dict[str, Any]) -> FxRate:
        return services.set_fx_rate(
            tenant_id=data.get("tenant_id") or "",
            base_currency=data["base_currency"],
            quote_currency=data["quote_currency"],
            rate=data["rate"],
            effective_from=data["effective_from"],
        )


@admin.register(FxRate)
class FxRateAdmin(OperatorTable, admin.ModelAdmin):
    form = FxRateForm
    list_display = ["base_currency", "quote_currency", "rate", "effective_from", "tenant_id"]
    list_filter = ["base_currency", "quote_currency"]
    search_fields = ["base_currency", "quote_currency", "tenant_id"]


# --- Ledgers ------------------------------------------------------------------------------


class Ledger(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    """Read-only rows of the user's tenants."""

    view_roles = READ


@admin.register(CostRecord)
class CostRecordAdmin(Ledger):
    list_display = [
        "timestamp",
        "tenant_id",
        "resource_type",
        "service_name",
        "cost_amount",
        "currency",
        "attributed_to_type",
        "attributed_to_id",
        "kind",
        "counted",
    ]
    list_filter = [
        "tenant_id",
        fixed_filter("kind", "kind", ["usage", "reversal", "allocation"]),
        fixed_filter("counted", "counted in totals", ["yes", "no"]),
    ]
    search_fields = [
        "=record_id",
        "=idempotency_key",
        "resource_type",
        "=attributed_to_id",
        "service_name",
    ]
    ordering = ["-timestamp"]
    show_full_result_count = False  # no COUNT(*) over the whole ledger on every page
    list_select_related = False
    actions = ["reverse_selected"]

    def has_correct_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, CORRECT)

    @admin.action(description="Reverse the selected records", permissions=["correct"])
    def reverse_selected(self, request: HttpRequest, queryset: Any) -> None:
        done = failed = 0
        for rec in self.scope(request, queryset, CORRECT)[:500]:
            try:
                services.reverse_record(
                    tenant_id=rec.tenant_id,
                    record_id=rec.pk,
                    reason="reversed in the admin",
                    actor=self.principal(request, rec.tenant_id).actor,
                )
                done += 1
            except DomainError:
                failed += 1
        self.message_user(
            request,
            f"{done} reversed, {failed} not reversible.",
            messages.SUCCESS if not failed else messages.WARNING,
        )


@admin.register(CostAllocation)
class CostAllocationAdmin(Ledger):
    list_display = [
        "created_at",
        "tenant_id",
        "rule",
        "total",
        "currency",
        "resource_type",
        "amortize_from",
        "amortize_to",
    ]
    list_filter = ["tenant_id", "rule"]
    search_fields = ["=allocation_id", "resource_type"]
    ordering = ["-created_at"]


@admin.register(AmortizationSlice)
class AmortizationSliceAdmin(Ledger):
    list_display = [
        "day",
        "tenant_id",
        "allocation_id",
        "attributed_to_id",
        "amount",
        "record_id",
        "written_at",
    ]
    list_filter = ["tenant_id"]
    search_fields = ["=allocation_id"]
    ordering = ["-day"]


@admin.register(CostAnomaly)
class CostAnomalyAdmin(Ledger):
    list_display = [
        "day",
        "tenant_id",
        "dimension_type",
        "dimension_id",
        "severity",
        "deviation_percentage",
        "expected_cost",
        "observed_cost",
        "consecutive_days",
        "alerted",
    ]
    list_filter = ["tenant_id", "severity", "dimension_type", "alerted"]
    search_fields = ["dimension_id"]
    ordering = ["-day"]


@admin.register(CostDailyRollup)
class CostDailyRollupAdmin(Ledger):
    list_display = [
        "day",
        "tenant_id",
        "resource_type",
        "service_name",
        "region",
        "attributed_to_id",
        "currency",
        "total_cost",
        "record_count",
    ]
    list_filter = ["tenant_id"]
    ordering = ["-day"]
    show_full_result_count = False
