"""The demo tenant's rate-limit policies (`manage.py seed_demo`), through the services.

Besides the policies: a burst of image renders past the "Image renders (queued)" limit, so the
dashboard's denials chart has a bar (again on a later run once the last denial is a day old),
and a 6 h emergency-capacity request on that policy by the demo user `ops`, which waits for an
approval (past 4 h; a new one once that request is decided or expired). Safe to run again.
"""

from datetime import timedelta

from budgeting_site.platform import clock
from budgeting_site.platform.principal import Principal
from ratelimits import selectors, services
from ratelimits.models import RateLimitPolicy
from receipts.services import system_actor

ACTOR = system_actor("seed_demo")

POLICIES = [
    {
        "policy_name": "LLM calls per tenant",
        "scope_type": "tenant",
        "resource_type": "llm.completions",
        "limit_value": 1000,
        "time_window_seconds": 3600,
        "algorithm": "token_bucket",
        "burst_capacity": 100,
        "overrides": {
            "time_of_day_adjustments": {
                "peak_hours": {"start": 9, "end": 18},
                "peak_multiplier": 0.8,
                "off_peak_multiplier": 1.5,
            }
        },
    },
    {
        "policy_name": "LLM calls per user",
        "scope_type": "user",
        "scope_id": "user-ada",
        "resource_type": "llm.completions",
        "limit_value": 100,
        "time_window_seconds": 3600,
        "algorithm": "sliding_window_log",
    },
    {
        "policy_name": "Image renders (queued)",
        "scope_type": "tenant",
        "resource_type": "images.render",
        "limit_value": 60,
        "time_window_seconds": 60,
        "algorithm": "leaky_bucket",
    },
    {
        "policy_name": "Exports per day (shadow)",
        "scope_type": "tenant",
        "resource_type": "exports",
        "limit_value": 20,
        "time_window_seconds": 86_400,
        "algorithm": "fixed_window",
        "mode": "shadow",
    },
]


IMAGE_RESOURCE = "images.render"
#: Checks of one image render each, as fast as the demo can send them: the queue takes 60,
#: the rest is denied.
BURST_CHECKS = 90
BURST_PRINCIPAL = "svc-image-worker"
EMERGENCY_EXTRA = 600
EMERGENCY_SECONDS = 6 * 3600
EMERGENCY_REASON = (
    "Catalogue re-render after the new watermark: the render queue is refusing jobs; "
    "6 hours of extra capacity to clear the backlog."
)
EMERGENCY_REQUESTER = "ops"


def seed(tenant_id: str) -> None:
    if not selectors.list_policies(tenant_id=tenant_id).exists():
        for data in POLICIES:
            services.policy_create(tenant_id=tenant_id, data=data, actor=ACTOR)
    images = selectors.list_policies(tenant_id=tenant_id, resource_type=IMAGE_RESOURCE).first()
    if images is None:
        return
    _burst(tenant_id)
    _emergency_request(tenant_id, images)


def _burst(tenant_id: str) -> None:
    """Image renders past the policy's limit, unless the last day has a denial already."""
    now = clock.now()
    denied = selectors.dashboard_denials_per_hour(
        tenant_ids=[tenant_id], start=now - timedelta(days=1), end=now + timedelta(seconds=1)
    )
    if any(count for _, count in denied):
        return
    worker = Principal(
        principal=BURST_PRINCIPAL, tenant_id=tenant_id, roles=frozenset({"service"}), kind="jwt"
    )
    for _ in range(BURST_CHECKS):
        services.check(
            req=services.CheckRequest(tenant_id=tenant_id, resource_type=IMAGE_RESOURCE),
            principal=worker,
            with_api_limit=False,
        )
    # A store that keeps receipts in a stream (Redis) hands them over here, not seconds later.
    services.drain_receipts(full_scan=True)


def _emergency_request(tenant_id: str, policy: RateLimitPolicy) -> None:
    """6 h of extra capacity, asked by `user:ops`: past 4 h, so it waits for an approval
    (none is asked while one for the policy still waits)."""
    from approvals import selectors as approvals

    waiting = approvals.list_approvals(
        tenant_id=tenant_id, status="pending", kind="emergency_capacity"
    ).filter(policy_id=policy.pk, expires_at__gt=clock.now())
    if waiting.exists():
        return
    services.emergency_capacity_request(
        tenant_id=tenant_id,
        policy_id=policy.pk,
        extra_requests=EMERGENCY_EXTRA,
        duration_seconds=EMERGENCY_SECONDS,
        reason=EMERGENCY_REASON,
        principal=_user(tenant_id, EMERGENCY_REQUESTER),
    )


def _user(tenant_id: str, username: str) -> Principal:
    """A demo user acting on the API as `user:<name>` with the roles of their membership."""
    from budgeting_site.platform.models import TenantMembership

    membership = TenantMembership.objects.filter(
        tenant_id=tenant_id, user__username=username
    ).first()
    return Principal(
        principal=f"user:{username}",
        tenant_id=tenant_id,
        roles=frozenset(membership.roles if membership else {"tenant_admin"}),
        credential_id=f"user:{membership.user_id}" if membership else "",
        kind="user",
    )
