"""Events (SPEC 7): the outbox, webhook subscriptions, deliveries with their attempt log, and
alerts.

An `OutboxEvent` is written in the same transaction as the change that caused it; the relay
fans it out into one `Delivery` per matching subscription (plus one to the notification
engine) and each `Delivery` is attempted until it is delivered, dead-lettered or cancelled.
"""

import uuid

from django.db import models


class OutboxEvent(models.Model):
    event_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    event_type = models.CharField(max_length=64)
    #: The envelope of SPEC 7 as the exact JSON text every receiver gets.
    body = models.TextField()
    created_at = models.DateTimeField()
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="outbox_pending",
                condition=models.Q(relayed_at__isnull=True),
            ),
            models.Index(fields=["tenant_id", "event_type", "-created_at"], name="outbox_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class Subscription(models.Model):
    subscription_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    event_types = models.JSONField(default=list)
    webhook_url = models.URLField(max_length=2048)
    filters = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    #: AES-GCM sealed `whsec_...` secret: it must be recoverable to sign, so it is not hashed.
    secret_sealed = models.TextField()
    disabled_reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="subscription_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {', '.join(self.event_types)}"


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        IN_FLIGHT = "in_flight"
        DELIVERED = "delivered"
        DEAD_LETTERED = "dead_lettered"
        CANCELLED = "cancelled"

    class Target(models.TextChoices):
        SUBSCRIPTION = "subscription"
        NOTIFICATION_ENGINE = "notification_engine"

    delivery_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    event = models.ForeignKey(OutboxEvent, on_delete=models.PROTECT, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    target = models.CharField(max_length=32, choices=Target.choices)
    subscription = models.ForeignKey(
        Subscription,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    #: `attempts` when the current round began (0, or the count at an admin replay).
    round_offset = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    #: While in flight: when another worker may take it over (a worker died mid-attempt).
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_lettered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscription"],
                condition=models.Q(subscription__isnull=False),
                name="delivery_once_per_subscription",
            ),
            models.UniqueConstraint(
                fields=["event", "target"],
                condition=models.Q(target="notification_engine"),
                name="delivery_once_to_engine",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(status__in=["pending", "in_flight"]),
            ),
            models.Index(fields=["subscription", "-created_at"], name="delivery_subscription"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.target} ({self.status})"


class DeliveryAttempt(models.Model):
    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    url_host = models.CharField(max_length=255, blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32)
    error = models.CharField(max_length=255, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_once")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.outcome}"


class Alert(models.Model):
    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Status(models.TextChoices):
        ACTIVE = "active"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    alert_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    alert_type = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    title = models.CharField(max_length=255)
    message = models.TextField(blank=True, default="")
    resource_id = models.CharField(max_length=128, blank=True, default="")
    dedup_key = models.CharField(max_length=255, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=255, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "alert_type", "resource_id", "dedup_key"],
                condition=~models.Q(status="resolved"),
                name="alert_open_once",
            )
        ]
        indexes = [
            models.Index(fields=["tenant_id", "-last_seen_at"], name="alert_tenant_seen"),
            models.Index(
                fields=["tenant_id", "status", "-last_seen_at"], name="alert_tenant_status"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.alert_type} {self.severity} {self.status}: {self.title}"
