"""The events demo seeder: a disabled subscription to an example URL and a few alerts, through
the services, safe to run twice."""

import pytest

from budgeting_site.platform import demo
from events import demo as events_demo
from events.models import Alert, Delivery, OutboxEvent, Subscription
from events.services import EVENT_TYPES, publish_event, relay_outbox
from receipts.models import Receipt

pytestmark = pytest.mark.django_db


def test_seeder_is_registered_and_idempotent():
    assert events_demo.seed in demo.seeders()

    events_demo.seed("demo")
    events_demo.seed("demo")

    (sub,) = Subscription.objects.all()
    assert (sub.tenant_id, sub.enabled, sub.webhook_url, sub.event_types) == (
        "demo",
        False,
        "https://hooks.example.com/budgeting/demo",
        list(EVENT_TYPES),
    )
    assert Receipt.objects.filter(gate_id="policy-admin", tenant_id="demo").count() == 1
    alerts = {a.alert_type: a for a in Alert.objects.filter(tenant_id="demo")}
    assert sorted(alerts) == ["rate_limit_violated", "reconciliation_drift"]
    limit = alerts["rate_limit_violated"]
    assert (limit.occurrences, limit.status, limit.details["current_rate"]) == (3, "active", 1305)
    drift = alerts["reconciliation_drift"]
    assert (drift.status, drift.acknowledged_by) == ("acknowledged", "system:seed_demo")


def test_the_demo_subscription_sends_nothing():
    events_demo.seed("demo")
    publish_event(tenant_id="demo", event_type="quota_exhausted", payload={"quota_id": "q"})

    assert relay_outbox() == {"relayed": 1, "deliveries": 0, "delivered": 0}
    assert Delivery.objects.count() == 0
    assert OutboxEvent.objects.filter(relayed_at__isnull=False).count() == 1
