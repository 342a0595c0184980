import json
from decimal import Decimal
from uuid import UUID

import pytest
from django.db import transaction

from events.models import Alert, OutboxEvent
from events.services import publish_event, raise_alert


@pytest.mark.django_db
def test_publish_event_writes_the_envelope_to_the_outbox(settings):
    settings.ENVIRONMENT = "staging"
    event = publish_event(
        tenant_id="t-acme",
        event_type="budget_threshold_exceeded",
        payload={"budget_id": UUID(int=1), "threshold": 80, "spent_amount": Decimal("80.50")},
        correlation_id="corr-1",
    )
    body = json.loads(event.body)
    assert body == {
        "event_id": str(event.event_id),
        "event_type": "budget_threshold_exceeded",
        "ts": body["ts"],
        "tenant_id": "t-acme",
        "environment": "staging",
        "plane": "shared",
        "source_module": "M35",
        "payload": {
            "budget_id": "00000000-0000-0000-0000-000000000001",
            "threshold": 80,
            "spent_amount": 80.5,
            "correlation_id": "corr-1",
        },
    }
    assert '"spent_amount":80.5' in event.body
    assert body["ts"].endswith("Z")


@pytest.mark.django_db
def test_event_rolls_back_with_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        publish_event(tenant_id="t-acme", event_type="quota_exhausted", payload={})
        raise RuntimeError("boom")
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_unknown_event_type_is_a_programming_error():
    with pytest.raises(ValueError):
        publish_event(tenant_id="t-acme", event_type="nope", payload={})


@pytest.mark.django_db
def test_repeated_alert_counts_occurrences_until_resolved():
    kwargs = {
        "tenant_id": "t-acme",
        "alert_type": "budget_threshold_exceeded",
        "severity": "warning",
        "title": "80% reached",
        "resource_id": "b-1",
        "dedup_key": "2025-01:80",
    }
    first = raise_alert(**kwargs)
    second = raise_alert(**{**kwargs, "severity": "critical"})
    assert second.alert_id == first.alert_id
    assert (second.occurrences, second.severity) == (2, "critical")
    raise_alert(**{**kwargs, "severity": "info"})
    assert Alert.objects.get().severity == "critical"
    other = raise_alert(**{**kwargs, "dedup_key": "2025-01:90"})
    assert other.alert_id != first.alert_id
    Alert.objects.filter(pk=first.pk).update(status="resolved")
    reopened = raise_alert(**kwargs)
    assert reopened.alert_id not in {first.alert_id, other.alert_id}
    assert reopened.occurrences == 1
