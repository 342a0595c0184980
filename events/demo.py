"""Demo subscriptions and alerts for `manage.py seed_demo`, written through the services (safe
to run again).

The subscription is disabled: it points at an example URL, and a demo must not send webhooks
anywhere until someone points it at their own receiver and enables it.
"""

from django.db import transaction

from budgeting_site.platform import clock
from events import services
from events.models import Subscription
from receipts.services import system_actor

ACTOR = system_actor("seed_demo")
DEMO_WEBHOOK_URL = "https://hooks.example.com/budgeting/demo"


def seed(tenant_id: str) -> None:
    if Subscription.objects.filter(tenant_id=tenant_id, webhook_url=DEMO_WEBHOOK_URL).exists():
        return
    services.create_subscription(
        tenant_id=tenant_id,
        event_types=list(services.EVENT_TYPES),
        webhook_url=DEMO_WEBHOOK_URL,
        filters={},
        enabled=False,
        actor=ACTOR,
    )
    day = clock.now().strftime("%Y-%m-%d")
    with transaction.atomic():
        # Three denials in a row on one policy: one alert counting three occurrences.
        for current_rate in (1180, 1240, 1305):
            services.raise_alert(
                tenant_id=tenant_id,
                alert_type="rate_limit_violated",
                severity="warning",
                title="search-api is over its rate limit",
                message=f"{current_rate} requests in the last minute against a limit of 1000.",
                resource_id="demo:search-api",
                dedup_key=day,
                details={"resource_key": "search-api", "current_rate": current_rate, "limit": 1000},
            )
        drift = services.raise_alert(
            tenant_id=tenant_id,
            alert_type="reconciliation_drift",
            severity="info",
            title="Budget spending drifted from the cost records",
            message="0.42 USD between the budget counters and the cost ledger; under review.",
            resource_id="demo:budget-ledger",
            dedup_key=day,
            details={"ledger": "budget_spend", "drift": "0.42", "currency": "USD"},
        )
    services.acknowledge_alert(tenant_id=tenant_id, alert_id=drift.pk, by=ACTOR["principal"])
