"""Receipts in the admin: a read-only ledger (no add, change or delete, for anyone), and the
signing keys with their public halves only, plus the rotation action."""

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.html import format_html

from budgeting_site.platform.admin_scoping import (
    ROLE_TABLE,
    TenantScopedAdmin,
    is_superuser,
    page_principal,
)
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnlyLedger
from receipts.models import Receipt, SigningKey
from receipts.services import (
    DECISION_STATUSES,
    GATE_IDS,
    SYSTEM_TENANT,
    rotate_signing_key,
    verify_stored,
)


def fixed_choices_filter(field: str, title: str, values: Any) -> type[admin.SimpleListFilter]:
    """A list filter with fixed choices: a plain `list_filter` on a CharField would run
    SELECT DISTINCT over the whole ledger."""

    class Filter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(v, v) for v in sorted(values)]

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    Filter.title = title
    return Filter


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyLedger, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = ROLE_TABLE["receipts"].read
    list_display = ["timestamp_utc", "tenant_id", "gate_id", "decision_status", "receipt_id", "kid"]
    list_filter = [
        fixed_choices_filter("gate_id", "gate", GATE_IDS),
        fixed_choices_filter("decision_status", "decision", DECISION_STATUSES),
        "tenant_id",
    ]
    search_fields = ["=receipt_id", "=tenant_id"]
    show_full_result_count = False
    fields = [
        "receipt_id",
        "tenant_id",
        "gate_id",
        "decision_status",
        "timestamp_utc",
        "kid",
        "signature",
        "verification",
        "signed_object",
    ]
    readonly_fields = fields
    actions = None

    @admin.display(description="verification")
    def verification(self, obj: Receipt) -> str:
        verdict = verify_stored(obj)
        return "valid" if verdict.valid else f"INVALID ({verdict.reason})"

    @admin.display(description="signed object")
    def signed_object(self, obj: Receipt) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.as_dict(), indent=2, ensure_ascii=False))


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyLedger, admin.ModelAdmin):
    """Operators (superusers) only; the sealed private key is never shown."""

    list_display = ["kid", "status", "source", "created_at", "retired_at"]
    list_filter = ["status", "source"]
    fields = ["kid", "public_key", "status", "source", "created_at", "retired_at"]
    readonly_fields = fields
    actions = ["rotate"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request)

    @admin.action(
        description="Rotate the signing key (new key active, old keys keep verifying)",
        permissions=["rotate"],
    )
    def rotate(self, request: HttpRequest, queryset: Any) -> None:
        try:
            row = rotate_signing_key(actor=page_principal(request, SYSTEM_TENANT).actor)
        except ImproperlyConfigured as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return
        self.message_user(request, f"New active signing key: {row.kid}")
