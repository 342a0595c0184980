"""Tenant rules (SPEC 1.2): a caller acts in its own tenant only; trying another is a 403 that
is written to the audit log."""

from typing import Any

from rest_framework.request import Request

from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.errors import Forbidden
from budgeting_site.platform.models import AuditLogEntry
from budgeting_site.platform.principal import Principal


def _storable(text: str, limit: int) -> str:
    """What the caller sent, as text PostgreSQL can store: NUL and lone surrogates escaped."""
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return escaped[:limit]


def record_cross_tenant_attempt(request: Request, principal: Principal, target: str) -> None:
    AuditLogEntry.objects.create(
        at=clock.now(),
        action="cross_tenant_denied",
        principal=principal.principal,
        tenant_id=principal.tenant_id,
        target_tenant_id=_storable(str(target), 128),
        path=_storable(request.path, 512),
        method=request.method,
        correlation_id=current_correlation_id(),
    )


def resolve_tenant_id(request: Request, given: Any) -> str:
    """The tenant a request acts in: the caller's, whether named or not."""
    principal: Principal = request.user
    if given is None or given == "":
        return principal.tenant_id
    if str(given) != principal.tenant_id:
        record_cross_tenant_attempt(request, principal, str(given))
        raise Forbidden("tenant_id is not your tenant")
    return principal.tenant_id


def requested_tenant_ids(request: Request, *, body: bool = True) -> list[Any]:
    """Every tenant_id a request names: the query string, the body, and batch items."""
    found: list[Any] = []
    if "tenant_id" in request.query_params:
        found.append(request.query_params.get("tenant_id"))
    if not body:
        return found
    # A malformed body raises here: DRF would otherwise remember it as empty.
    data = request.data
    if isinstance(data, dict):
        if "tenant_id" in data:
            found.append(data.get("tenant_id"))
        for value in data.values():
            if isinstance(value, list):
                found.extend(
                    item["tenant_id"]
                    for item in value
                    if isinstance(item, dict) and item.get("tenant_id") not in (None, "")
                )
    return found
