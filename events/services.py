"""Every write of the events app: the outbox, subscriptions, deliveries, alerts.

Domain apps call `publish_event` and `raise_alert` inside their own `transaction.atomic()`:
the outbox row and the alert commit or roll back with the change that caused them.
"""

import hashlib
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q

from budgeting_site.platform import clock, jobs
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.metrics import EVENTS_DELIVERED, EVENTS_FAILED, OUTBOX_BACKLOG
from budgeting_site.platform.renderers import dumps
from events import crypto, http, urlsafety
from events.exceptions import (
    AlertNotFound,
    DeliveryNotReplayable,
    InvalidAlertTransition,
    InvalidFilters,
    SubscriptionNotFound,
    UnknownEventType,
    WebhookUrlRefused,
)
from events.models import Alert, Delivery, DeliveryAttempt, OutboxEvent, Subscription

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "budget_threshold_exceeded",
    "budget_forecast_exceeded",
    "rate_limit_violated",
    "cost_anomaly_detected",
    "quota_allocated",
    "quota_exhausted",
    "resource_usage_optimized",
)
ALERT_TYPES = (
    *EVENT_TYPES,
    "quota_threshold_warning",
    "reconciliation_drift",
    "delivery_dead_lettered",
    "renewal_failed",
)
SEVERITIES = ("info", "warning", "critical")
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

#: Per attempt: connect, write and read each bounded, and the whole attempt too.
ATTEMPT_TIMEOUT_SECONDS = http.ATTEMPT_TIMEOUT_SECONDS
#: An in-flight delivery whose worker died may be taken over after this.
LEASE = timedelta(seconds=60)
#: Delay before retry n (after attempt n fails): the first within 60 s, then exponential,
#: about a day in all (23 h 42 min 30 s), then dead-lettered.
RETRY_DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=8),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
RELAY_BATCH = 200
USER_AGENT = "budgeting-service-webhooks/1"


def _plain(value: Any) -> Any:
    """Payload values for JSON: UUIDs and times as strings, money stays an exact Decimal."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- The outbox -----------------------------------------------------------------------------


def publish_event(
    *, tenant_id: str, event_type: str, payload: dict[str, Any], correlation_id: str | None = None
) -> OutboxEvent:
    """Write an event to the outbox in the caller's transaction; nudge the relay after commit.

    The envelope is SPEC 7's; `correlation_id` is added to the payload (the request's unless
    given or already present).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    now = clock.now()
    event_id = uuid.uuid4()
    body_payload = _plain(dict(payload))
    body_payload.setdefault("correlation_id", correlation_id or current_correlation_id())
    envelope = {
        "event_id": str(event_id),
        "event_type": event_type,
        "ts": _plain(now),
        "tenant_id": tenant_id,
        "environment": settings.ENVIRONMENT,
        "plane": settings.EVENT_PLANE,
        "source_module": "M35",
        "payload": body_payload,
    }
    event = OutboxEvent.objects.create(
        event_id=event_id,
        tenant_id=tenant_id,
        event_type=event_type,
        body=dumps(envelope),
        created_at=now,
    )
    transaction.on_commit(lambda: jobs.enqueue("events.relay_outbox"))
    return event


def _matches(filters: dict[str, Any], payload: dict[str, Any]) -> bool:
    for name, wanted in (filters or {}).items():
        if name not in payload:
            return False
        actual = payload[name]
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(actual, option) for option in options):
            return False
    return True


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted
    if isinstance(actual, int | float | Decimal) and isinstance(wanted, int | float | Decimal):
        return Decimal(str(actual)) == Decimal(str(wanted))
    return str(actual) == str(wanted)


def relay_outbox(
    *, batch_size: int = RELAY_BATCH, max_batches: int = 50, deliver: bool = True
) -> dict[str, int]:
    """Fan committed outbox events out into deliveries, then attempt those deliveries.

    Two relays at once are safe: each claims its events with FOR UPDATE SKIP LOCKED
    (PostgreSQL; SQLite has one writer at a time), and a delivery is unique per event and
    subscription, so an event is never fanned out twice. Returns counts.
    """
    relayed = 0
    created_ids: list[uuid.UUID] = []
    for _ in range(max_batches):
        count, ids = _relay_batch(batch_size)
        relayed += count
        created_ids.extend(ids)
        if count < batch_size:
            break
    OUTBOX_BACKLOG.set(OutboxEvent.objects.filter(relayed_at__isnull=True).count())
    delivered = 0
    if deliver:
        for delivery_id in created_ids:
            if attempt_delivery(delivery_id) == Delivery.Status.DELIVERED:
                delivered += 1
    return {"relayed": relayed, "deliveries": len(created_ids), "delivered": delivered}


def _relay_batch(batch_size: int) -> tuple[int, list[uuid.UUID]]:
    now = clock.now()
    engine_url = getattr(settings, "NOTIFICATION_ENGINE_URL", None)
    with transaction.atomic():
        pending = OutboxEvent.objects.filter(relayed_at__isnull=True).order_by("created_at")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        events = list(pending[:batch_size])
        if not events:
            return 0, []
        tenants = {e.tenant_id for e in events}
        by_tenant: dict[str, list[Subscription]] = defaultdict(list)
        for sub in Subscription.objects.filter(
            tenant_id__in=tenants, enabled=True, deleted_at__isnull=True
        ):
            by_tenant[sub.tenant_id].append(sub)
        deliveries: list[Delivery] = []
        for event in events:
            payload = json.loads(event.body).get("payload") or {}
            for sub in by_tenant.get(event.tenant_id, []):
                if event.event_type in sub.event_types and _matches(sub.filters, payload):
                    deliveries.append(
                        Delivery(
                            tenant_id=event.tenant_id,
                            event=event,
                            event_type=event.event_type,
                            target=Delivery.Target.SUBSCRIPTION,
                            subscription=sub,
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
            if engine_url:
                deliveries.append(
                    Delivery(
                        tenant_id=event.tenant_id,
                        event=event,
                        event_type=event.event_type,
                        target=Delivery.Target.NOTIFICATION_ENGINE,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(relayed_at=now)
        created = list(
            Delivery.objects.filter(
                pk__in=[d.pk for d in deliveries], status=Delivery.Status.PENDING
            ).values_list("pk", flat=True)
        )
    logger.info("events.relayed", extra={"events": len(events), "deliveries": len(created)})
    return len(events), created


def retry_deliveries(*, limit: int = 500) -> dict[str, int]:
    """Attempt every delivery that is due (and any in-flight one whose worker died)."""
    now = clock.now()
    due = list(
        Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.IN_FLIGHT, lease_until__lt=now)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    outcomes: dict[str, int] = defaultdict(int)
    for delivery_id in due:
        outcome = attempt_delivery(delivery_id)
        outcomes[str(outcome) if outcome else "skipped"] += 1
    return dict(outcomes)


def _claim(delivery_id: uuid.UUID, now: datetime) -> bool:
    """Take a delivery for one attempt with a conditional UPDATE: one worker wins."""
    return bool(
        Delivery.objects.filter(pk=delivery_id)
        .filter(
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.IN_FLIGHT, lease_until__lt=now)
        )
        .update(
            status=Delivery.Status.IN_FLIGHT, lease_until=now + LEASE, attempts=F("attempts") + 1
        )
    )


def attempt_delivery(delivery_id: uuid.UUID) -> str | None:
    """One attempt of one delivery, if it is due and no other worker holds it.

    Returns the delivery's status afterwards, or None when it was not ours to attempt.
    The HTTP call runs outside any transaction; its outcome is written in one.
    """
    now = clock.now()
    if not _claim(delivery_id, now):
        return None
    delivery = Delivery.objects.select_related("event", "subscription").get(pk=delivery_id)
    number = delivery.attempts
    sub = delivery.subscription
    if delivery.target == Delivery.Target.SUBSCRIPTION and (
        sub is None or sub.deleted_at is not None or not sub.enabled
    ):
        return _finish(delivery, number, now, outcome="cancelled", status_code=None, error="")

    if delivery.target == Delivery.Target.SUBSCRIPTION:
        url = sub.webhook_url
    else:
        url = getattr(settings, "NOTIFICATION_ENGINE_URL", None) or ""
        if not url:
            return _finish(delivery, number, now, outcome="cancelled", status_code=None, error="")

    body = delivery.event.body.encode("utf-8")
    msg_id = str(delivery.event_id)
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    started = time.perf_counter()
    status_code: int | None = None
    error = ""
    to_subscription = delivery.target == Delivery.Target.SUBSCRIPTION
    try:
        if to_subscription:
            assert sub is not None
            urlsafety.check_url_shape(url)
            secret = crypto.unseal(sub.secret_sealed, str(sub.pk))
        else:
            secret = crypto.notification_engine_secret()
        headers["webhook-signature"] = crypto.sign(secret, msg_id, timestamp, body)
        # Subscriptions: resolved once, vetted, connected to the vetted address. The
        # notification engine is the operator's own, and may well be on a private network.
        response = http.post(url, body, headers, vet=to_subscription)
        status_code = response.status_code
    except urlsafety.UnsafeUrl as exc:
        error = f"refused: {exc}"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:255]
    except Exception as exc:  # a task boundary: log and count as a failed attempt
        logger.exception("events.delivery_error", extra={"delivery_id": str(delivery_id)})
        error = f"{type(exc).__name__}"[:255]
    duration_ms = int((time.perf_counter() - started) * 1000)

    if status_code is not None and 200 <= status_code < 300:
        outcome = "delivered"
    elif status_code == 410 and delivery.target == Delivery.Target.SUBSCRIPTION:
        outcome = "gone"
    elif number - delivery.round_offset >= MAX_ATTEMPTS:
        outcome = "dead_lettered"
    else:
        outcome = "failed"
    return _finish(
        delivery,
        number,
        now,
        outcome=outcome,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        url=url,
    )


def _finish(
    delivery: Delivery,
    number: int,
    now: datetime,
    *,
    outcome: str,
    status_code: int | None,
    error: str,
    duration_ms: int = 0,
    url: str = "",
) -> str | None:
    done = clock.now()
    changes: dict[str, Any] = {
        "lease_until": None,
        "last_status_code": status_code,
        "last_error": error[:255],
    }
    if outcome == "delivered":
        changes.update(status=Delivery.Status.DELIVERED, delivered_at=done, next_attempt_at=None)
    elif outcome in {"gone", "cancelled"}:
        changes.update(status=Delivery.Status.CANCELLED, next_attempt_at=None)
    elif outcome == "dead_lettered":
        changes.update(
            status=Delivery.Status.DEAD_LETTERED, dead_lettered_at=done, next_attempt_at=None
        )
    else:
        delay = RETRY_DELAYS[min(number - delivery.round_offset, len(RETRY_DELAYS)) - 1]
        changes.update(status=Delivery.Status.PENDING, next_attempt_at=now + delay)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            attempted_at=now,
            url_host=(urlsplit(url).hostname or "")[:255] if url else "",
            status_code=status_code,
            outcome=outcome,
            error=error[:255],
            duration_ms=duration_ms,
        )
        # Only while this attempt still owns the delivery (no takeover after a lost lease).
        owned = Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.Status.IN_FLIGHT, attempts=number
        ).update(**changes)
        if not owned:
            return None
        if outcome == "gone" and delivery.subscription_id is not None:
            Subscription.objects.filter(pk=delivery.subscription_id).update(
                enabled=False, disabled_reason="gone", updated_at=done, version=F("version") + 1
            )
            Delivery.objects.filter(
                subscription_id=delivery.subscription_id, status=Delivery.Status.PENDING
            ).update(status=Delivery.Status.CANCELLED, next_attempt_at=None)
            logger.warning(
                "events.subscription_disabled_gone",
                extra={"subscription_id": str(delivery.subscription_id)},
            )
        if outcome == "dead_lettered":
            raise_alert(
                tenant_id=delivery.tenant_id,
                alert_type="delivery_dead_lettered",
                severity="warning",
                title="Webhook delivery dead-lettered",
                message=(
                    f"Delivery of {delivery.event_type} event {delivery.event_id} failed "
                    f"{number - delivery.round_offset} times and was dead-lettered."
                ),
                resource_id=str(delivery.subscription_id or delivery.target),
                dedup_key="",
                details={
                    "delivery_id": str(delivery.pk),
                    "event_id": str(delivery.event_id),
                    "event_type": delivery.event_type,
                    "attempts": number,
                    "last_status_code": status_code,
                },
            )
    if outcome == "delivered":
        EVENTS_DELIVERED.inc()
    elif outcome != "cancelled":
        EVENTS_FAILED.labels(outcome).inc()
    logger.info(
        "events.delivery_attempt",
        extra={
            "delivery_id": str(delivery.pk),
            "event_id": str(delivery.event_id),
            "attempt": number,
            "outcome": outcome,
            "status_code": status_code,
        },
    )
    return changes["status"]


def replay_delivery(*, delivery_id: uuid.UUID, actor: str) -> Delivery:
    """A dead-lettered delivery is given a fresh round of attempts, due now."""
    now = clock.now()
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=delivery_id, status=Delivery.Status.DEAD_LETTERED
        ).update(
            status=Delivery.Status.PENDING,
            next_attempt_at=now,
            round_offset=F("attempts"),
            dead_lettered_at=None,
            last_error="",
        )
        if not updated:
            raise DeliveryNotReplayable()
    logger.info("events.delivery_replayed", extra={"delivery_id": str(delivery_id), "by": actor})
    transaction.on_commit(lambda: jobs.enqueue("events.retry_deliveries"))
    return Delivery.objects.get(pk=delivery_id)


# --- Subscriptions --------------------------------------------------------------------------


def _validate_event_types(event_types: Any) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise UnknownEventType(
            "event_types must be a non-empty list",
            details={"event_types": ["must be a non-empty list of event types"]},
        )
    unknown = sorted({str(t) for t in event_types} - set(EVENT_TYPES))
    if unknown or not all(isinstance(t, str) for t in event_types):
        raise UnknownEventType(
            f"Unknown event types: {', '.join(unknown)}",
            details={"event_types": [f"unknown event type: {t}" for t in unknown]},
        )
    return sorted(set(event_types), key=EVENT_TYPES.index)


def _validate_filters(filters: Any) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise InvalidFilters(details={"filters": ["must be an object"]})

    def scalar(v: Any) -> bool:
        if isinstance(v, str):
            return "\x00" not in v and len(v) <= 1024
        return v is None or isinstance(v, int | float | bool | Decimal)

    for name, wanted in filters.items():
        if not isinstance(name, str) or not name or len(name) > 128 or "\x00" in name:
            raise InvalidFilters(details={"filters": ["field names must be 1..128 characters"]})
        ok = (
            scalar(wanted)
            if not isinstance(wanted, list)
            else bool(wanted) and all(scalar(v) for v in wanted)
        )
        if not ok:
            raise InvalidFilters(
                f"filters.{name} must be a value or a non-empty list of values",
                details={"filters": [f"{name}: must be a value or a non-empty list of values"]},
            )
    return json.loads(dumps(filters))


def _validate_url(url: Any) -> str:
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise WebhookUrlRefused(
            "webhook_url must be a URL of at most 2048 characters",
            details={"webhook_url": ["must be a URL of at most 2048 characters"]},
        )
    try:
        urlsafety.check_url_shape(url)
    except urlsafety.UnsafeUrl as exc:
        raise WebhookUrlRefused(str(exc), details={"webhook_url": [str(exc)]}) from exc
    return url


def _subscription_receipt(sub: Subscription, operation: str, actor: dict[str, Any]) -> None:
    from receipts.services import emit_receipt

    emit_receipt(
        tenant_id=sub.tenant_id,
        gate_id="policy-admin",
        inputs={"operation": operation, "subscription_id": sub.pk},
        result={
            "subscription_id": sub.pk,
            "version": sub.version,
            "event_types": list(sub.event_types),
            "enabled": sub.enabled,
            "deleted": sub.deleted_at is not None,
            # The URL may carry a token; only its hash goes into the receipt.
            "webhook_url_sha256": hashlib.sha256(sub.webhook_url.encode()).hexdigest(),
        },
        decision_status="pass",
        rationale=f"subscription {operation}",
        policy_version_ids=[f"{sub.pk}@{sub.version}"],
        actor=actor,
    )


def create_subscription(
    *,
    tenant_id: str,
    event_types: list[str],
    webhook_url: str,
    filters: dict[str, Any] | None = None,
    enabled: bool = True,
    actor: dict[str, Any],
) -> tuple[Subscription, str]:
    """Returns the subscription and its signing secret, which is shown this once only."""
    event_types = _validate_event_types(event_types)
    webhook_url = _validate_url(webhook_url)
    filters = _validate_filters(filters)
    now = clock.now()
    secret = crypto.new_secret()
    sub_id = uuid.uuid4()
    with transaction.atomic():
        sub = Subscription.objects.create(
            subscription_id=sub_id,
            tenant_id=tenant_id,
            event_types=event_types,
            webhook_url=webhook_url,
            filters=filters,
            enabled=bool(enabled),
            secret_sealed=crypto.seal(secret, str(sub_id)),
            created_at=now,
            updated_at=now,
        )
        _subscription_receipt(sub, "create", actor)
    return sub, secret


_UPDATABLE = {"event_types", "webhook_url", "filters", "enabled"}


def update_subscription(
    *, tenant_id: str, subscription_id: uuid.UUID, changes: dict[str, Any], actor: dict[str, Any]
) -> Subscription:
    """Partial update of `event_types`, `webhook_url`, `filters`, `enabled`."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    cleaned: dict[str, Any] = {}
    if "event_types" in changes:
        cleaned["event_types"] = _validate_event_types(changes["event_types"])
    if "webhook_url" in changes:
        cleaned["webhook_url"] = _validate_url(changes["webhook_url"])
    if "filters" in changes:
        cleaned["filters"] = _validate_filters(changes["filters"])
    if "enabled" in changes:
        cleaned["enabled"] = bool(changes["enabled"])
        if cleaned["enabled"]:
            cleaned["disabled_reason"] = ""
    with transaction.atomic():
        sub = (
            Subscription.objects.select_for_update()
            .filter(tenant_id=tenant_id, pk=subscription_id, deleted_at__isnull=True)
            .first()
        )
        if sub is None:
            raise SubscriptionNotFound()
        for name, value in cleaned.items():
            setattr(sub, name, value)
        sub.updated_at = clock.now()
        sub.version += 1
        sub.save()
        _subscription_receipt(sub, "update", actor)
    return sub


def delete_subscription(
    *, tenant_id: str, subscription_id: uuid.UUID, actor: dict[str, Any]
) -> None:
    """Kept for its delivery history, but gone from the API; pending deliveries are cancelled."""
    now = clock.now()
    with transaction.atomic():
        sub = (
            Subscription.objects.select_for_update()
            .filter(tenant_id=tenant_id, pk=subscription_id, deleted_at__isnull=True)
            .first()
        )
        if sub is None:
            raise SubscriptionNotFound()
        sub.deleted_at = now
        sub.enabled = False
        sub.disabled_reason = "deleted"
        sub.updated_at = now
        sub.version += 1
        sub.save()
        Delivery.objects.filter(subscription=sub, status=Delivery.Status.PENDING).update(
            status=Delivery.Status.CANCELLED, next_attempt_at=None
        )
        _subscription_receipt(sub, "delete", actor)


# --- Alerts ---------------------------------------------------------------------------------


def raise_alert(
    *,
    tenant_id: str,
    alert_type: str,
    severity: str,
    title: str,
    message: str = "",
    resource_id: str = "",
    dedup_key: str = "",
    details: dict[str, Any] | None = None,
) -> Alert:
    """Open an alert, or count one more occurrence of the open (not resolved) alert with the
    same tenant, type, resource and dedup key. Runs in the caller's transaction.

    A repeat keeps the highest severity seen and takes the latest title, message and details.
    """
    if alert_type not in ALERT_TYPES:
        raise ValueError(f"unknown alert type {alert_type!r}")
    if severity not in _SEVERITY_RANK:
        raise ValueError(f"unknown severity {severity!r}")
    now = clock.now()
    resource_id = str(resource_id or "")[:128]
    dedup_key = str(dedup_key or "")[:255]
    details = json.loads(dumps(_plain(details or {})))
    key = {
        "tenant_id": tenant_id,
        "alert_type": alert_type,
        "resource_id": resource_id,
        "dedup_key": dedup_key,
    }
    for _ in range(3):
        existing = _bump_open_alert(key, severity, title, message, details, now)
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                return Alert.objects.create(
                    **key,
                    severity=severity,
                    title=title[:255],
                    message=message,
                    details=details,
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            continue  # opened concurrently: count an occurrence on it instead
    raise RuntimeError("could not open or update the alert")


def _bump_open_alert(
    key: dict[str, str],
    severity: str,
    title: str,
    message: str,
    details: dict[str, Any],
    now: datetime,
) -> Alert | None:
    open_alerts = Alert.objects.filter(**key).exclude(status=Alert.Status.RESOLVED)
    current = open_alerts.values_list("severity", flat=True).first()
    if current is None:
        return None
    if _SEVERITY_RANK[current] > _SEVERITY_RANK[severity]:
        severity = current
    updated = open_alerts.update(
        occurrences=F("occurrences") + 1,
        last_seen_at=now,
        severity=severity,
        title=title[:255],
        message=message,
        details=details,
    )
    if not updated:
        return None
    return open_alerts.first()


def _transition(
    *,
    tenant_id: str,
    alert_id: uuid.UUID,
    allowed_from: set[str],
    changes: dict[str, Any],
    by: str,
    comment: str,
) -> Alert:
    with transaction.atomic():
        updated = Alert.objects.filter(
            tenant_id=tenant_id, pk=alert_id, status__in=allowed_from
        ).update(**changes)
        alert = Alert.objects.filter(tenant_id=tenant_id, pk=alert_id).first()
        if alert is None:
            raise AlertNotFound()
        if not updated:
            raise InvalidAlertTransition(
                f"An alert that is {alert.status} cannot become {changes['status']}",
                details={"status": alert.status},
            )
    logger.info(
        "events.alert_transition",
        extra={
            "alert_id": str(alert_id),
            "status": changes["status"],
            "by": by,
            "comment": comment[:2000],
        },
    )
    return alert


def acknowledge_alert(*, tenant_id: str, alert_id: uuid.UUID, by: str, comment: str = "") -> Alert:
    return _transition(
        tenant_id=tenant_id,
        alert_id=alert_id,
        by=by,
        comment=comment,
        allowed_from={Alert.Status.ACTIVE},
        changes={
            "status": Alert.Status.ACKNOWLEDGED,
            "acknowledged_at": clock.now(),
            "acknowledged_by": by[:255],
        },
    )


def resolve_alert(*, tenant_id: str, alert_id: uuid.UUID, by: str, comment: str = "") -> Alert:
    return _transition(
        tenant_id=tenant_id,
        alert_id=alert_id,
        by=by,
        comment=comment,
        allowed_from={Alert.Status.ACTIVE, Alert.Status.ACKNOWLEDGED},
        changes={
            "status": Alert.Status.RESOLVED,
            "resolved_at": clock.now(),
            "resolved_by": by[:255],
        },
    )
