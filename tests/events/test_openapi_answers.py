"""Every answer of the subscriptions and alerts API matches the response schema the code
generates."""

import pytest

from events.services import publish_event, raise_alert, relay_outbox
from tests.events.schema import assert_documented

pytestmark = pytest.mark.django_db

SUBS = "/budget/v1/event-subscriptions"
ALERTS = "/budget/v1/alerts"


@pytest.fixture
def admin(api, auth):
    return auth(api, "t-acme", ["tenant_admin"])


def test_subscription_and_delivery_answers_match_the_schema(admin, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    body = {
        "event_types": ["quota_exhausted", "quota_allocated"],
        "webhook_url": receiver.url("/hook"),
        "filters": {"resource_type": ["gpu", "api_calls"], "threshold": 80},
    }
    created = assert_documented(admin.post(SUBS, body, format="json"), SUBS, "post")
    sub_id = created["subscription_id"]
    assert created["signing_secret"].startswith("whsec_")

    receiver.answer("/hook", 500)
    publish_event(
        tenant_id="t-acme",
        event_type="quota_exhausted",
        payload={"resource_type": "gpu", "threshold": 80},
    )
    relay_outbox()
    deliveries = assert_documented(
        admin.get(f"{SUBS}/{sub_id}/deliveries"), f"{SUBS}/{{id}}/deliveries", "get"
    )
    (delivery,) = deliveries["deliveries"]
    assert (delivery["status"], delivery["last_status_code"]) == ("pending", 500)
    assert delivery["attempts"][0]["outcome"] == "failed"

    assert assert_documented(admin.get(SUBS), SUBS, "get")["pagination"]["total_count"] == 1
    detail = assert_documented(admin.get(f"{SUBS}/{sub_id}"), f"{SUBS}/{{id}}", "get")
    assert "signing_secret" not in detail
    updated = admin.put(f"{SUBS}/{sub_id}", {"enabled": False}, format="json")
    assert assert_documented(updated, f"{SUBS}/{{id}}", "put")["enabled"] is False
    patched = admin.patch(f"{SUBS}/{sub_id}", {"filters": {}}, format="json")
    assert assert_documented(patched, f"{SUBS}/{{id}}", "patch")["filters"] == {}


def test_alert_answers_match_the_schema(admin):
    alert = raise_alert(
        tenant_id="t-acme",
        alert_type="quota_threshold_warning",
        severity="warning",
        title="Quota at 80 %",
        resource_id="q-1",
        dedup_key="2025-03:80",
        details={"threshold": 80, "nested": {"a": [1, None]}},
    )
    raise_alert(tenant_id="t-acme", alert_type="reconciliation_drift", severity="info", title="x")

    listed = assert_documented(admin.get(ALERTS), ALERTS, "get")
    assert [a["resource_id"] for a in listed["alerts"]] == [None, "q-1"]
    detail = assert_documented(admin.get(f"{ALERTS}/{alert.pk}"), f"{ALERTS}/{{id}}", "get")
    assert detail["occurrences"] == 1
    acked = admin.post(f"{ALERTS}/{alert.pk}/acknowledge", {}, format="json")
    assert assert_documented(acked, f"{ALERTS}/{{id}}/acknowledge", "post")["status"] == (
        "acknowledged"
    )
    resolved = admin.post(f"{ALERTS}/{alert.pk}/resolve", {}, format="json")
    assert assert_documented(resolved, f"{ALERTS}/{{id}}/resolve", "post")["resolved_at"]
