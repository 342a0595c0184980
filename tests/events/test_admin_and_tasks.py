import pytest
from django.contrib.auth import get_user_model

from budgeting_site.celery import app
from budgeting_site.platform.models import TenantMembership
from events import services
from events.models import Alert, Delivery, OutboxEvent
from tests.events.helpers import ACTOR

pytestmark = pytest.mark.django_db


def _user(client, name, superuser=False, memberships=()):
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(name, f"{name}@example.com", "pw-long-enough-1")
    else:
        user = model.objects.create_user(name, f"{name}@example.com", "pw-long-enough-1")
        user.is_staff = True
        user.save()
    for tenant, roles in memberships:
        TenantMembership.objects.create(user=user, tenant_id=tenant, roles=roles)
    client.force_login(user)
    return client


def _dead_letter():
    services.create_subscription(
        tenant_id="t-acme",
        event_types=["quota_exhausted"],
        webhook_url="https://hooks.example.com/x",
        actor=ACTOR,
    )
    services.publish_event(tenant_id="t-acme", event_type="quota_exhausted", payload={})
    services.relay_outbox(deliver=False)
    Delivery.objects.update(status="dead_lettered", attempts=services.MAX_ATTEMPTS)
    return Delivery.objects.get()


def test_tasks_have_their_pinned_names():
    app.loader.import_default_modules()
    assert "events.relay_outbox" in app.tasks
    assert "events.retry_deliveries" in app.tasks
    assert app.tasks["events.relay_outbox"].run() == {
        "relayed": 0,
        "deliveries": 0,
        "delivered": 0,
    }


def test_admin_replays_a_dead_lettered_delivery(client):
    delivery = _dead_letter()
    _user(client, "ops", superuser=True)
    response = client.post(
        "/admin/events/delivery/", {"action": "replay", "_selected_action": [str(delivery.pk)]}
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.round_offset) == ("pending", services.MAX_ATTEMPTS)
    # The ledger pages are read-only.
    assert client.get(f"/admin/events/delivery/{delivery.pk}/delete/").status_code == 403
    event = OutboxEvent.objects.get()
    assert client.get(f"/admin/events/outboxevent/{event.pk}/change/").status_code == 200
    assert client.get(f"/admin/events/outboxevent/{event.pk}/delete/").status_code == 403


def test_auditor_cannot_replay_and_sees_only_own_tenant(client):
    delivery = _dead_letter()
    _user(client, "aud", memberships=[("t-acme", ["auditor"])])
    assert client.get("/admin/events/delivery/").status_code == 200
    client.post(
        "/admin/events/delivery/", {"action": "replay", "_selected_action": [str(delivery.pk)]}
    )
    delivery.refresh_from_db()
    assert delivery.status == "dead_lettered"


def test_admin_acknowledges_and_resolves_alerts_through_the_service(client):
    alert = services.raise_alert(
        tenant_id="t-acme", alert_type="reconciliation_drift", severity="critical", title="drift"
    )
    services.raise_alert(
        tenant_id="t-globex", alert_type="reconciliation_drift", severity="critical", title="x"
    )
    _user(client, "adm", memberships=[("t-acme", ["tenant_admin"])])
    assert client.get("/admin/events/alert/").status_code == 200
    client.post(
        "/admin/events/alert/", {"action": "acknowledge", "_selected_action": [str(alert.pk)]}
    )
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "user:adm")
    client.post(
        "/admin/events/alert/",
        {"action": "resolve", "_selected_action": [str(a.pk) for a in Alert.objects.all()]},
    )
    assert dict(Alert.objects.values_list("tenant_id", "status")) == {
        "t-acme": "resolved",
        "t-globex": "active",
    }


def test_dashboard_open_alerts_panel_counts_unresolved_by_severity():
    from datetime import UTC, datetime

    from budgeting_site.platform import admin_dashboard
    from events.selectors import dashboard_open_alerts

    for tenant, severity, resource in [
        ("t-acme", "critical", "a"),
        ("t-acme", "warning", "b"),
        ("t-acme", "warning", "c"),
        ("t-globex", "info", "d"),
    ]:
        services.raise_alert(
            tenant_id=tenant,
            alert_type="reconciliation_drift",
            severity=severity,
            title="t",
            resource_id=resource,
        )
    resolved = Alert.objects.get(resource_id="c")
    services.resolve_alert(tenant_id="t-acme", alert_id=resolved.pk, by="x")
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert dashboard_open_alerts(tenant_ids=["t-acme"], start=now, end=now) == [
        ("critical", 1),
        ("warning", 1),
    ]
    assert sorted(dashboard_open_alerts(tenant_ids=None, start=now, end=now)) == [
        ("critical", 1),
        ("info", 1),
        ("warning", 1),
    ]
    panel = admin_dashboard.build_panel("open_alerts", tenant_ids=["t-acme"], now=now)
    assert panel["state"] == "ok"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/events/alert/",
        "/admin/events/alert/?alert_type=reconciliation_drift&status=active",
        "/admin/events/delivery/?event_type=quota_exhausted",
        "/admin/events/outboxevent/?event_type=quota_exhausted",
        "/admin/events/subscription/",
        "/admin/receipts/receipt/?gate_id=policy-admin&decision_status=pass",
        "/admin/receipts/signingkey/",
    ],
)
def test_admin_pages_render(client, path):
    _dead_letter()
    services.raise_alert(
        tenant_id="t-acme", alert_type="reconciliation_drift", severity="info", title="x"
    )
    _user(client, "ops", superuser=True)
    assert client.get(path).status_code == 200
