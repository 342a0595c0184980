"""This API's own per-tenant limits (SPEC 1.5), as the platform's `API_RATE_LIMITER`."""

from __future__ import annotations

from typing import Any

from budgeting_site.platform.errors import RateLimited
from budgeting_site.platform.principal import Principal
from ratelimits import services


def enforce(request: Any, principal: Principal, limit_class: str) -> dict[str, str]:
    """The headers for the response; raises RateLimited (429 with Retry-After) when over."""
    allowed, headers = services.enforce_api_limit(
        tenant_id=principal.tenant_id, limit_class=limit_class
    )
    if not allowed:
        raise RateLimited(
            "This API's rate limit for your tenant is exhausted",
            details={"limit_class": limit_class},
            headers=headers,
        )
    return headers
