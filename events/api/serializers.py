from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, StrictSerializer


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
    """Acknowledge and resolve take no fields; a comment is accepted and logged."""

    tenant_id = ClientIdField(required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
