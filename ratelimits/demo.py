"""The demo tenant's rate-limit policies (`manage.py seed_demo`), through the services."""

from ratelimits import selectors, services
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


def seed(tenant_id: str) -> None:
    if selectors.list_policies(tenant_id=tenant_id).exists():
        return
    for data in POLICIES:
        services.policy_create(tenant_id=tenant_id, data=data, actor=ACTOR)
