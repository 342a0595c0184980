"""Reads of the events app, always scoped to a tenant."""

import uuid
from datetime import datetime

from django.db.models import QuerySet

from budgeting_site.platform.queries import filter_given
from events.exceptions import AlertNotFound, SubscriptionNotFound
from events.models import Alert, Delivery, Subscription


def subscription_for(*, tenant_id: str, subscription_id: uuid.UUID) -> Subscription:
    sub = Subscription.objects.filter(
        tenant_id=tenant_id, pk=subscription_id, deleted_at__isnull=True
    ).first()
    if sub is None:
        raise SubscriptionNotFound()
    return sub


def subscriptions_for(
    *, tenant_id: str, event_type: str | None = None, enabled: bool | None = None
) -> QuerySet[Subscription]:
    qs = Subscription.objects.filter(tenant_id=tenant_id, deleted_at__isnull=True)
    if enabled is not None:
        qs = qs.filter(enabled=enabled)
    if event_type:
        # JSON containment is not portable to SQLite; a tenant has few subscriptions.
        ids = [s.pk for s in qs.only("pk", "event_types") if event_type in s.event_types]
        qs = qs.filter(pk__in=ids)
    return qs.order_by("-created_at", "-pk")


def deliveries_for(
    *, tenant_id: str, subscription_id: uuid.UUID, status: str | None = None
) -> QuerySet[Delivery]:
    subscription_for(tenant_id=tenant_id, subscription_id=subscription_id)
    qs = Delivery.objects.filter(tenant_id=tenant_id, subscription_id=subscription_id)
    if status:
        qs = qs.filter(status=status)
    return qs.prefetch_related("attempt_log").order_by("-created_at", "-pk")


def alert_for(*, tenant_id: str, alert_id: uuid.UUID) -> Alert:
    alert = Alert.objects.filter(tenant_id=tenant_id, pk=alert_id).first()
    if alert is None:
        raise AlertNotFound()
    return alert


def alerts_for(
    *,
    tenant_id: str,
    alert_type: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> QuerySet[Alert]:
    """Newest activity first. The time range `[start_time, end_time)` keeps alerts that were
    seen in it: first seen before its end and last seen at or after its start."""
    return filter_given(
        Alert.objects.filter(tenant_id=tenant_id),
        alert_type=alert_type,
        severity=severity,
        status=status,
        last_seen_at__gte=start_time,
        first_seen_at__lt=end_time,
    ).order_by("-last_seen_at", "-pk")


def dashboard_open_alerts(
    *, tenant_ids: list[str] | None, start: datetime, end: datetime, **_: object
) -> list[tuple[str, int]]:
    """The admin dashboard's `open_alerts` panel: (severity, count) of unresolved alerts."""
    from django.db.models import Count

    qs = Alert.objects.exclude(status=Alert.Status.RESOLVED)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    return [
        (row["severity"], row["n"])
        for row in qs.values("severity").annotate(n=Count("pk")).order_by("severity")
    ]
