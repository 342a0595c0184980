"""Webhook delivery against a real HTTP receiver on loopback (SPEC 7, issue 3)."""

import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from events import services
from events.models import Alert, Delivery, DeliveryAttempt, OutboxEvent, Subscription
from events.services import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    publish_event,
    relay_outbox,
    replay_delivery,
    retry_deliveries,
)
from tests.events.helpers import ACTOR, standard_webhooks_verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True


def _subscribe(receiver, path="/hook", event_types=("quota_exhausted",), **kwargs):
    sub, secret = services.create_subscription(
        tenant_id="t-acme",
        event_types=list(event_types),
        webhook_url=receiver.url(path),
        actor=ACTOR,
        **kwargs,
    )
    return sub, secret


def _publish(n=1, tenant="t-acme", event_type="quota_exhausted", **payload):
    return [
        publish_event(
            tenant_id=tenant, event_type=event_type, payload={"quota_id": f"q-{i}", **payload}
        )
        for i in range(n)
    ]


def test_delivered_webhook_verifies_with_an_independent_standard_webhooks_check(
    receiver, moving_clock
):
    _, secret = _subscribe(receiver)
    (event,) = _publish()
    assert relay_outbox() == {"relayed": 1, "deliveries": 1, "delivered": 1}

    (got,) = receiver.at("/hook")
    now = int(moving_clock().timestamp())
    assert got.headers["webhook-id"] == str(event.event_id)
    assert got.headers["webhook-timestamp"] == str(now)
    assert got.headers["content-type"] == "application/json"
    assert standard_webhooks_verify(secret, got.headers, got.body, now)
    assert got.body == event.body.encode()
    envelope = got.json()
    assert envelope["event_type"] == "quota_exhausted"
    assert envelope["source_module"] == "M35"
    assert envelope["payload"]["quota_id"] == "q-0"
    # A different secret or a changed body does not verify.
    assert not standard_webhooks_verify("whsec_" + "A" * 43 + "=", got.headers, got.body, now)
    assert not standard_webhooks_verify(secret, got.headers, got.body + b" ", now)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_500_twice_then_200_is_three_attempts_with_one_webhook_id_and_one_delivery(
    receiver, moving_clock
):
    _subscribe(receiver)
    receiver.answer("/hook", 500, 500, 200)
    (event,) = _publish()

    relay_outbox()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    # The first retry is due within 60 s.
    assert delivery.next_attempt_at - moving_clock() <= timedelta(seconds=60)
    assert retry_deliveries() == {}  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    moving_clock.advance(seconds=RETRY_DELAYS[0].total_seconds())
    assert retry_deliveries() == {"pending": 1}
    moving_clock.advance(seconds=RETRY_DELAYS[1].total_seconds())
    assert retry_deliveries() == {"delivered": 1}
    moving_clock.advance(hours=30)
    assert retry_deliveries() == {}

    ids = [r.headers["webhook-id"] for r in receiver.at("/hook")]
    assert ids == [str(event.event_id)] * 3
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert Delivery.objects.count() == 1
    assert list(
        DeliveryAttempt.objects.order_by("number").values_list("number", "status_code", "outcome")
    ) == [(1, 500, "failed"), (2, 500, "failed"), (3, 200, "delivered")]


def test_410_disables_the_subscription_and_stops_deliveries(receiver, moving_clock):
    sub, _ = _subscribe(receiver)
    receiver.answer("/hook", 410)
    _publish()
    relay_outbox()
    sub.refresh_from_db()
    assert (sub.enabled, sub.disabled_reason) == (False, "gone")
    assert Delivery.objects.get().status == "cancelled"
    _publish()
    relay_outbox()
    moving_clock.advance(days=2)
    retry_deliveries()
    assert len(receiver.requests) == 1
    assert Delivery.objects.count() == 1


def test_events_committed_while_no_relay_runs_are_all_delivered_when_it_starts(receiver):
    _subscribe(receiver)
    events = _publish(25)
    assert OutboxEvent.objects.filter(relayed_at__isnull=True).count() == 25
    assert receiver.requests == []
    result = relay_outbox(batch_size=10)
    assert result == {"relayed": 25, "deliveries": 25, "delivered": 25}
    got = sorted(r.headers["webhook-id"] for r in receiver.requests)
    assert got == sorted(str(e.event_id) for e in events)
    assert relay_outbox() == {"relayed": 0, "deliveries": 0, "delivered": 0}
    assert len(receiver.requests) == 25


def test_event_whose_transaction_rolled_back_is_never_delivered(receiver):
    _subscribe(receiver)
    with pytest.raises(RuntimeError), transaction.atomic():
        _publish()
        raise RuntimeError("the change failed")
    (kept,) = _publish()
    relay_outbox()
    retry_deliveries()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(kept.event_id)]
    assert OutboxEvent.objects.count() == 1


def test_only_matching_subscriptions_and_filters_get_the_event(receiver):
    _subscribe(receiver, "/all")
    _subscribe(receiver, "/filtered", filters={"resource_type": ["gpu", "tpu"]})
    _subscribe(receiver, "/other-type", event_types=["budget_threshold_exceeded"])
    services.create_subscription(
        tenant_id="t-globex",
        event_types=["quota_exhausted"],
        webhook_url=receiver.url("/other-tenant"),
        actor=ACTOR,
    )
    _publish(resource_type="gpu")
    _publish(resource_type="cpu")
    relay_outbox()
    assert len(receiver.at("/all")) == 2
    assert [r.json()["payload"]["resource_type"] for r in receiver.at("/filtered")] == ["gpu"]
    assert receiver.at("/other-type") == []
    assert receiver.at("/other-tenant") == []


def test_disabled_subscription_gets_nothing(receiver):
    _subscribe(receiver, enabled=False)
    _publish()
    relay_outbox()
    assert receiver.requests == []


def test_notification_engine_gets_every_event(receiver, settings):
    settings.NOTIFICATION_ENGINE_URL = receiver.url("/engine")
    _publish(2)
    _publish(event_type="budget_threshold_exceeded", tenant="t-globex")
    relay_outbox()
    got = receiver.at("/engine")
    assert len(got) == 3
    assert {r.json()["tenant_id"] for r in got} == {"t-acme", "t-globex"}
    assert all("webhook-id" in r.headers for r in got)


def test_failing_receiver_is_dead_lettered_after_about_a_day_with_an_alert(receiver, moving_clock):
    sub, _ = _subscribe(receiver)
    receiver.answer("/hook", *([503] * 50))
    _publish()
    start = moving_clock()
    relay_outbox()
    for _ in range(MAX_ATTEMPTS + 2):
        moving_clock.advance(hours=9)
        retry_deliveries()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("dead_lettered", MAX_ATTEMPTS)
    assert len(receiver.requests) == MAX_ATTEMPTS
    total = sum(RETRY_DELAYS, timedelta())
    assert timedelta(hours=20) <= total <= timedelta(hours=30)
    assert delivery.dead_lettered_at >= start + total
    alert = Alert.objects.get(alert_type="delivery_dead_lettered")
    assert (alert.tenant_id, alert.resource_id, alert.severity) == (
        "t-acme",
        str(sub.pk),
        "warning",
    )
    assert alert.details["delivery_id"] == str(delivery.pk)

    # Replay from the admin's service: a fresh round, delivered now that the receiver is fine.
    receiver.answer("/hook")
    replay_delivery(delivery_id=delivery.pk, actor="user:ops")
    assert retry_deliveries() == {"delivered": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", MAX_ATTEMPTS + 1)
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == MAX_ATTEMPTS + 1


def test_replay_refuses_a_delivery_that_is_not_dead_lettered(receiver):
    _subscribe(receiver)
    _publish()
    relay_outbox()
    delivery = Delivery.objects.get()
    with pytest.raises(services.DeliveryNotReplayable):
        replay_delivery(delivery_id=delivery.pk, actor="user:ops")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


def test_timeout_and_connection_refused_are_failed_attempts(receiver, moving_clock, settings):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    services.create_subscription(
        tenant_id="t-acme",
        event_types=["quota_exhausted"],
        webhook_url=f"http://127.0.0.1:{port}/gone",
        actor=ACTOR,
    )
    _publish()
    relay_outbox()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "ConnectError" in delivery.last_error
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.status_code) == ("failed", None)


def test_hostname_resolving_to_a_private_address_is_refused_at_delivery(
    receiver, settings, monkeypatch
):
    sub, _ = _subscribe(receiver)
    Subscription.objects.filter(pk=sub.pk).update(webhook_url="http://hooks.example.com/x")
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(
        "events.urlsafety.socket.getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))],
    )
    _publish()
    relay_outbox()
    delivery = Delivery.objects.get()
    assert delivery.status == "pending"
    assert delivery.last_error.startswith("refused:")
    assert receiver.requests == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relays_at_once_deliver_each_event_exactly_once(receiver):
    _subscribe(receiver)
    events = _publish(60)
    with pytest.raises(RuntimeError), transaction.atomic():
        _publish(1, kind="rolled-back")
        raise RuntimeError("this change failed")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(relay_outbox(batch_size=5))
            retry_deliveries()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(r["relayed"] for r in results) == 60
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert sorted(ids) == sorted(str(e.event_id) for e in events)
    assert Delivery.objects.count() == 60
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert not any(r.json()["payload"].get("kind") == "rolled-back" for r in receiver.requests)
