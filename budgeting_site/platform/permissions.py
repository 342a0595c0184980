"""Roles (SPEC 1.1) as data: each view declares which roles may call each action."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from budgeting_site.platform.errors import Forbidden, Unauthorized

TENANT_ADMIN = "tenant_admin"
FINANCIAL_CONTROLLER = "financial_controller"
AUDITOR = "auditor"
TENANT_USER = "tenant_user"
SYSTEM_ARCHITECT = "system_architect"
SERVICE = "service"


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


PUBLIC = None  # an action anyone may call, unauthenticated


def required_roles(view: Any, request: Request) -> frozenset[str] | None:
    """The roles a view demands for this request: `view.roles` maps an action name (viewsets)
    or a lower-case method name (plain views) to a role set; a missing entry means no access."""
    table: dict[str, frozenset[str] | None] = getattr(view, "roles", {})
    action = getattr(view, "action", None)
    key = action if action and action in table else request.method.lower()
    if key not in table:
        return frozenset()
    return table[key]


class HasRole(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        needed = required_roles(view, request)
        if needed is None:
            return True
        if request.user is None:
            raise Unauthorized()
        if not request.user.has_any(needed):
            raise Forbidden("Your roles do not allow this operation")
        return True
