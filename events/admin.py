"""Events in the admin: read-only ledgers (outbox, deliveries, attempts), subscriptions and
alerts whose writes go through the services, and the replay of a dead-lettered delivery."""

import json
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html

from budgeting_site.platform.admin_scoping import ROLE_TABLE, TenantScopedAdmin
from budgeting_site.platform.admin_scoping import ReadOnlyAdmin as ReadOnly
from events import services
from events.exceptions import DeliveryNotReplayable, InvalidAlertTransition
from events.models import Alert, Delivery, DeliveryAttempt, OutboxEvent, Subscription


def fixed_choices_filter(field: str, title: str, values: Any) -> type[admin.SimpleListFilter]:
    """A list filter with fixed choices: a plain `list_filter` on a CharField would run
    SELECT DISTINCT over the whole table."""

    class Filter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(v, v) for v in values]

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    Filter.title = title
    return Filter


READ = ROLE_TABLE["events"].read
WRITE = ROLE_TABLE["events"].write


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = ["created_at", "tenant_id", "event_type", "event_id", "relayed_at"]
    list_filter = [
        fixed_choices_filter("event_type", "event type", services.EVENT_TYPES),
        "tenant_id",
    ]
    search_fields = ["=event_id", "=tenant_id"]
    show_full_result_count = False
    fields = ["event_id", "tenant_id", "event_type", "created_at", "relayed_at", "envelope"]
    readonly_fields = fields

    @admin.display(description="envelope")
    def envelope(self, obj: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.body), indent=2))


class AttemptInline(ReadOnly, admin.TabularInline):
    model = DeliveryAttempt
    fields = [
        "number",
        "attempted_at",
        "url_host",
        "status_code",
        "outcome",
        "error",
        "duration_ms",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    list_display = [
        "created_at",
        "tenant_id",
        "event_type",
        "target",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    list_filter = [
        "status",
        "target",
        fixed_choices_filter("event_type", "event type", services.EVENT_TYPES),
        "tenant_id",
    ]
    search_fields = ["=delivery_id", "=event__event_id", "=subscription__subscription_id"]
    show_full_result_count = False
    readonly_fields = [
        "delivery_id",
        "tenant_id",
        "event",
        "event_type",
        "target",
        "subscription",
        "status",
        "attempts",
        "round_offset",
        "next_attempt_at",
        "lease_until",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "dead_lettered_at",
    ]
    fields = readonly_fields
    inlines = [AttemptInline]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, WRITE)

    @admin.action(description="Replay selected dead-lettered deliveries", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: Any) -> None:
        done = skipped = 0
        who = f"user:{request.user.get_username()}"
        for delivery in self.scope(request, queryset, WRITE):
            try:
                services.replay_delivery(delivery_id=delivery.pk, actor=who)
                done += 1
            except DeliveryNotReplayable:
                skipped += 1
        self.message_user(request, f"Replayed {done} deliveries")
        if skipped:
            self.message_user(
                request, f"{skipped} were not dead-lettered and were left alone", messages.WARNING
            )


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    """Created and edited over the API (the secret is shown once there); here: view, disable
    and enable through the same service."""

    view_roles = READ
    change_roles = WRITE
    list_display = ["subscription_id", "tenant_id", "webhook_url", "enabled", "disabled_reason"]
    list_filter = ["enabled", "tenant_id"]
    search_fields = ["=subscription_id", "webhook_url", "=tenant_id"]
    fields = [
        "subscription_id",
        "tenant_id",
        "event_types",
        "webhook_url",
        "filters",
        "enabled",
        "disabled_reason",
        "created_at",
        "updated_at",
        "deleted_at",
        "version",
    ]
    readonly_fields = fields
    actions = ["enable", "disable"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    def has_write_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, WRITE)

    def _set_enabled(self, request: HttpRequest, queryset: Any, enabled: bool) -> None:
        count = 0
        for sub in self.scope(request, queryset, WRITE):
            services.update_subscription(
                tenant_id=sub.tenant_id,
                subscription_id=sub.pk,
                changes={"enabled": enabled},
                actor=self.principal(request, sub.tenant_id).actor,
            )
            count += 1
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {count} subscriptions")

    @admin.action(description="Enable selected subscriptions", permissions=["write"])
    def enable(self, request: HttpRequest, queryset: Any) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected subscriptions", permissions=["write"])
    def disable(self, request: HttpRequest, queryset: Any) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(Alert)
class AlertAdmin(ReadOnly, TenantScopedAdmin, admin.ModelAdmin):
    view_roles = READ
    change_roles = WRITE
    list_display = [
        "last_seen_at",
        "tenant_id",
        "alert_type",
        "severity",
        "status",
        "title",
        "occurrences",
    ]
    list_filter = [
        "status",
        "severity",
        fixed_choices_filter("alert_type", "alert type", services.ALERT_TYPES),
        "tenant_id",
    ]
    search_fields = ["=alert_id", "title", "=resource_id", "=tenant_id"]
    date_hierarchy = "last_seen_at"
    fields = [
        "alert_id",
        "tenant_id",
        "alert_type",
        "severity",
        "status",
        "title",
        "message",
        "resource_id",
        "dedup_key",
        "details",
        "occurrences",
        "first_seen_at",
        "last_seen_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
    ]
    readonly_fields = fields
    actions = ["acknowledge", "resolve"]

    def has_write_permission(self, request: HttpRequest) -> bool:
        return self.has_roles(request, WRITE)

    def _apply(self, request: HttpRequest, queryset: Any, fn: Any, verb: str) -> None:
        done = refused = 0
        who = f"user:{request.user.get_username()}"
        for alert in self.scope(request, queryset, WRITE):
            try:
                fn(tenant_id=alert.tenant_id, alert_id=alert.pk, by=who)
                done += 1
            except InvalidAlertTransition:
                refused += 1
        self.message_user(request, f"{verb} {done} alerts")
        if refused:
            self.message_user(
                request, f"{refused} could not make that transition", messages.WARNING
            )

    @admin.action(description="Acknowledge selected alerts", permissions=["write"])
    def acknowledge(self, request: HttpRequest, queryset: Any) -> None:
        self._apply(request, queryset, services.acknowledge_alert, "Acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["write"])
    def resolve(self, request: HttpRequest, queryset: Any) -> None:
        self._apply(request, queryset, services.resolve_alert, "Resolved")
