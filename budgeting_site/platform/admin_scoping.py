"""Tenant scoping for the admin and the approval pages (SPEC 1.1, 1.2, 8).

A Django user acts for the tenants of its `TenantMembership` rows, each with a set of roles —
the same roles, and the same role table, as the API. Superusers see and act on every tenant.
Staff users without a membership that grants a role see nothing: Django's own model
permissions are not consulted for admins that use `TenantScopedAdmin`, the roles decide.

Usage in an app's `admin.py`:

    from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin

    @admin.register(Budget)
    class BudgetAdmin(TenantScopedAdmin, admin.ModelAdmin):
        view_roles = ROLE_TABLE["budgets"].read
        change_roles = ROLE_TABLE["budgets"].write

See docs/admin-scoping.md.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from budgeting_site.platform.models import TenantMembership
from budgeting_site.platform.permissions import (
    AUDITOR,
    FINANCIAL_CONTROLLER,
    SERVICE,
    SYSTEM_ARCHITECT,
    TENANT_ADMIN,
    TENANT_USER,
)
from budgeting_site.platform.principal import Principal

NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ResourceRoles:
    """One row of SPEC 1.1's role table."""

    read: frozenset[str]
    write: frozenset[str]
    special: dict[str, frozenset[str]]


def r(*names: str) -> frozenset[str]:
    """A role set: `view_roles = r(TENANT_ADMIN, AUDITOR)`."""
    return frozenset(names)


_r = r


# SPEC 1.1, row by row. The API declares the same sets on its views; keep the two in step.
ROLE_TABLE: dict[str, ResourceRoles] = {
    "budgets": ResourceRoles(
        read=_r(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR, SERVICE),
        write=_r(TENANT_ADMIN, FINANCIAL_CONTROLLER),
        special={"holds": _r(SERVICE, TENANT_ADMIN)},
    ),
    "approvals": ResourceRoles(
        read=_r(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR),
        write=NOBODY,
        special={},  # "decide" depends on a setting: use approver_roles()
    ),
    "ratelimits": ResourceRoles(
        read=_r(TENANT_ADMIN, SYSTEM_ARCHITECT, AUDITOR, SERVICE),
        write=_r(TENANT_ADMIN, SYSTEM_ARCHITECT),
        special={"emergency_capacity": _r(SYSTEM_ARCHITECT)},
    ),
    "costs": ResourceRoles(
        read=_r(TENANT_USER, TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR, SERVICE),
        write=_r(SERVICE, TENANT_ADMIN),
        special={
            "allocations": _r(TENANT_ADMIN, FINANCIAL_CONTROLLER),
            "reversals": _r(TENANT_ADMIN, FINANCIAL_CONTROLLER),
            "csv_export": _r(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR),
        },
    ),
    "quotas": ResourceRoles(
        read=_r(TENANT_USER, TENANT_ADMIN, SERVICE),
        write=_r(TENANT_ADMIN),
        special={},
    ),
    # alerts, subscriptions, deliveries, events and receipts
    "events": ResourceRoles(
        read=_r(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR),
        write=_r(TENANT_ADMIN),
        special={},
    ),
    "receipts": ResourceRoles(
        read=_r(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR),
        write=NOBODY,  # append-only, SPEC 6
        special={},
    ),
}


def approver_roles() -> frozenset[str]:
    """Who may approve or reject (SPEC 1.1): financial_controller, and tenant_admin when
    `APPROVALS_ALLOW_TENANT_ADMIN` is on. Read at call time so tests can flip the setting."""
    if getattr(settings, "APPROVALS_ALLOW_TENANT_ADMIN", False):
        return _r(FINANCIAL_CONTROLLER, TENANT_ADMIN)
    return _r(FINANCIAL_CONTROLLER)


_CACHE_ATTR = "_tenant_roles_cache"


def tenant_roles(request_or_user: Any) -> dict[str, frozenset[str]]:
    """tenant_id → roles of the signed-in user; memoised on the request (one query per
    request, whatever the number of permission checks a changelist makes)."""
    request = request_or_user if isinstance(request_or_user, HttpRequest) else None
    user = request.user if request is not None else request_or_user
    if request is not None:
        cached = getattr(request, _CACHE_ATTR, None)
        if cached is not None and cached[0] == user.pk:
            return cached[1]
    if user is None or not user.is_authenticated or not user.is_active:
        found: dict[str, frozenset[str]] = {}
    else:
        found = {
            tenant_id: frozenset(roles or ())
            for tenant_id, roles in TenantMembership.objects.filter(user_id=user.pk)
            .order_by("tenant_id")
            .values_list("tenant_id", "roles")
        }
    if request is not None:
        setattr(request, _CACHE_ATTR, (user.pk, found))
    return found


def is_superuser(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def tenants_with(request: HttpRequest, roles: Iterable[str]) -> list[str]:
    """The tenants in which the user holds any of `roles` (superusers: see `is_superuser`)."""
    wanted = frozenset(roles)
    return [t for t, held in tenant_roles(request).items() if held & wanted]


def has_role(request: HttpRequest, roles: Iterable[str], tenant_id: str | None = None) -> bool:
    """True when the user holds one of `roles` in `tenant_id` (in any tenant when None).
    Superusers hold every role everywhere."""
    if is_superuser(request):
        return True
    wanted = frozenset(roles)
    if tenant_id is None:
        return bool(tenants_with(request, wanted))
    return bool(tenant_roles(request).get(str(tenant_id), NOBODY) & wanted)


def page_principal(
    request: HttpRequest, tenant_id: str, *, superuser_holds_all: bool = True
) -> Principal:
    """The principal of a signed-in user acting in one tenant: `user:<username>` (SPEC 1.1)
    with the roles of that membership (superusers: every role, unless `superuser_holds_all`
    is False — the approval pages go by memberships only)."""
    user = request.user
    if superuser_holds_all and is_superuser(request):
        from budgeting_site.platform.models import ROLES

        held = frozenset(ROLES)
    else:
        held = tenant_roles(request).get(str(tenant_id), NOBODY)
    return Principal(
        principal=f"user:{user.get_username()}",
        tenant_id=str(tenant_id),
        roles=held,
        credential_id=f"user:{user.pk}",
        kind="user",
    )


class TenantChoiceField(forms.ChoiceField):
    """The tenant of a new row: only tenants where the user may write."""


class TenantListFilter(admin.SimpleListFilter):
    """A tenant filter that lists the user's own tenants.

    `list_filter = ["tenant_id"]` would run `SELECT DISTINCT tenant_id` over the whole table
    (slow on ledgers with millions of rows) and show staff the ids of other tenants.
    Superusers get every tenant that has a membership; any other id works in the URL.
    """

    title = "tenant"
    parameter_name = "tenant_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if is_superuser(request):
            ids = (
                TenantMembership.objects.order_by("tenant_id")
                .values_list("tenant_id", flat=True)
                .distinct()
            )
        else:
            ids = sorted(tenant_roles(request))
        return [(t, t) for t in ids]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value:
            field = getattr(self, "field_name", "tenant_id")
            return queryset.filter(**{field: value})
        return queryset


class TenantScopedAdmin:
    """Mixin for a `ModelAdmin` of tenant-owned rows: put it first in the bases.

    - `get_queryset` keeps the rows of the tenants where the user holds a view or change role
      (superusers: all rows), so lists, search, detail pages, actions and autocomplete are
      all scoped; another tenant's object URL answers "does not exist".
    - `has_view/add/change/delete_permission` come from the roles, per object tenant.
    - the `tenant_id` form field becomes a choice of the tenants where the user may write.

    Declare `view_roles`, `change_roles` (also add, unless `add_roles` is set) and
    `delete_roles` (default: nobody — domain rows are retired through services). A subclass
    that defines its own `has_*_permission` (a read-only ledger returning False) wins.
    Actions: gate them with `@admin.action(permissions=["decide"])` and a
    `has_decide_permission` that calls `self.has_roles(request, roles)`, and keep only the
    rows the user may act on with `self.scope(request, queryset, roles)`.
    """

    tenant_field: str = "tenant_id"
    view_roles: frozenset[str] = NOBODY
    change_roles: frozenset[str] = NOBODY
    add_roles: frozenset[str] | None = None
    delete_roles: frozenset[str] = NOBODY

    # --- helpers for subclasses -------------------------------------------------------------
    def has_roles(self, request: HttpRequest, roles: Iterable[str], obj: Model | None = None):
        tenant_id = None if obj is None else getattr(obj, self.tenant_field)
        return has_role(request, roles, tenant_id)

    def scope(self, request: HttpRequest, queryset: QuerySet, roles: Iterable[str]) -> QuerySet:
        """The rows of `queryset` in the tenants where the user holds one of `roles`."""
        if is_superuser(request):
            return queryset
        return queryset.filter(**{f"{self.tenant_field}__in": tenants_with(request, roles)})

    def require_roles(self, request: HttpRequest, roles: Iterable[str], tenant_id: str) -> None:
        """For `save_model` and actions that call a service with a tenant from a form."""
        if not has_role(request, roles, tenant_id):
            raise PermissionDenied("Your roles do not allow this in that tenant")

    def principal(self, request: HttpRequest, tenant_id: str) -> Principal:
        return page_principal(request, tenant_id)

    def _visible_roles(self) -> frozenset[str]:
        return frozenset(self.view_roles) | frozenset(self.change_roles)

    # --- ModelAdmin hooks -------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return self.scope(request, queryset, self._visible_roles())

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request, self._visible_roles())

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_roles(request, self._visible_roles(), obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        roles = self.change_roles if self.add_roles is None else self.add_roles
        return self.has_roles(request, roles)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_roles(request, self.change_roles, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_roles(request, self.delete_roles, obj)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == self.tenant_field and not is_superuser(request):
            roles = self.change_roles if self.add_roles is None else self.add_roles
            choices = [(t, t) for t in tenants_with(request, frozenset(roles))]
            return TenantChoiceField(choices=choices, label="Tenant", required=True)
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # A plain "tenant_id" filter becomes the scoped one (see TenantListFilter).
        filters = list(super().get_list_filter(request))  # type: ignore[misc]
        if self.tenant_field != "tenant_id":
            scoped = type(
                "ScopedTenantListFilter",
                (TenantListFilter,),
                {"parameter_name": self.tenant_field, "field_name": self.tenant_field},
            )
        else:
            scoped = TenantListFilter
        return [scoped if f == self.tenant_field else f for f in filters]


class ReadOnlyAdmin:
    """Ledgers and service-owned rows: no add, change or delete in the admin (put it first)."""

    def has_add_permission(self, request: Any, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
