from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, StrictSerializer
from events.services import ALERT_TYPES, EVENT_TYPES, SEVERITIES


class SubscriptionIn(StrictSerializer):
    server_owned = frozenset(
        {"subscription_id", "created_at", "updated_at", "signing_secret", "disabled_reason"}
    )
    tenant_id = ClientIdField(required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), allow_empty=False, max_length=64
    )
    webhook_url = serializers.CharField(max_length=2048, trim_whitespace=False)
    filters = serializers.DictField(required=False, allow_empty=True)
    enabled = serializers.BooleanField(required=False)


class AlertActionIn(StrictSerializer):
    """Acknowledge and resolve take no fields; a comment is accepted and logged. The fields of
    an alert as read are server-owned: a client may send back what it read (SPEC 1.2)."""

    server_owned = frozenset(
        (
            "alert_id",
            "alert_type",
            "severity",
            "status",
            "title",
            "message",
            "resource_id",
            "details",
            "occurrences",
            "first_seen_at",
            "last_seen_at",
            "acknowledged_at",
            "resolved_at",
        )
    )
    tenant_id = ClientIdField(required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


# --- Output shapes: what the answers are, for the OpenAPI schema ------------------------------
# The views render with `render_subscription`, `render_delivery` and `render_alert`; these
# describe exactly those dicts (the tests validate real answers against the generated schema).


class EventsPaginationOut(serializers.Serializer):
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_count = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class SubscriptionOut(serializers.Serializer):
    subscription_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    webhook_url = serializers.CharField()
    filters = serializers.DictField(help_text="{payload_field: value or [values]}, all must match")
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(
        allow_null=True, help_text="`gone` after the receiver answered 410, else null"
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SubscriptionCreatedOut(SubscriptionOut):
    signing_secret = serializers.CharField(
        help_text="`whsec_` + base64 of 32 random bytes; shown this once"
    )


@extend_schema_serializer(many=False)  # a page object, not a bare array
class SubscriptionListOut(serializers.Serializer):
    subscriptions = SubscriptionOut(many=True)
    pagination = EventsPaginationOut()


class DeliveryAttemptOut(serializers.Serializer):
    number = serializers.IntegerField()
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    outcome = serializers.ChoiceField(
        choices=["delivered", "failed", "gone", "dead_lettered", "cancelled"]
    )
    error = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField()


class DeliveryOut(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    subscription_id = serializers.UUIDField(allow_null=True)
    event_id = serializers.UUIDField()
    event_type = serializers.ChoiceField(choices=EVENT_TYPES)
    status = serializers.ChoiceField(
        choices=["pending", "in_flight", "delivered", "dead_lettered", "cancelled"]
    )
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    dead_lettered_at = serializers.DateTimeField(allow_null=True)
    attempts = DeliveryAttemptOut(many=True)


class DeliveryListOut(serializers.Serializer):
    deliveries = DeliveryOut(many=True)
    pagination = EventsPaginationOut()


class AlertOut(serializers.Serializer):
    alert_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    alert_type = serializers.ChoiceField(choices=ALERT_TYPES)
    severity = serializers.ChoiceField(choices=SEVERITIES)
    status = serializers.ChoiceField(choices=["active", "acknowledged", "resolved"])
    title = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    resource_id = serializers.CharField(allow_null=True)
    details = serializers.DictField()
    occurrences = serializers.IntegerField()
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(many=False)  # a page object, not a bare array
class AlertListOut(serializers.Serializer):
    alerts = AlertOut(many=True)
    pagination = EventsPaginationOut()
