"""Event subscriptions, their deliveries, and alerts (SPEC 7)."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform.errors import ValidationFailed
from budgeting_site.platform.pagination import paginate
from budgeting_site.platform.params import parse_instant
from budgeting_site.platform.permissions import AUDITOR, FINANCIAL_CONTROLLER, TENANT_ADMIN, roles
from budgeting_site.platform.views import TenantViewSet
from events import selectors, services
from events.api.serializers import (
    AlertActionIn,
    AlertListOut,
    AlertOut,
    DeliveryListOut,
    SubscriptionCreatedOut,
    SubscriptionIn,
    SubscriptionListOut,
    SubscriptionOut,
)
from events.models import Alert, Delivery, Subscription

READ = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR)
WRITE = roles(TENANT_ADMIN)


def _choice(request: Request, name: str, allowed: Any) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    allowed = sorted(allowed)
    if value not in allowed:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(allowed)}",
            details={name: [f"must be one of {', '.join(allowed)}"]},
        )
    return value


def _bool_param(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    lowered = value.lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise ValidationFailed(
        f"{name} must be true or false", details={name: ["must be true or false"]}
    )


def render_subscription(sub: Subscription) -> dict[str, Any]:
    return {
        "subscription_id": sub.pk,
        "tenant_id": sub.tenant_id,
        "event_types": sub.event_types,
        "webhook_url": sub.webhook_url,
        "filters": sub.filters,
        "enabled": sub.enabled,
        "disabled_reason": sub.disabled_reason or None,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
    }


def render_delivery(d: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": d.pk,
        "subscription_id": d.subscription_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempt_count": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error or None,
        "created_at": d.created_at,
        "delivered_at": d.delivered_at,
        "dead_lettered_at": d.dead_lettered_at,
        "attempts": [
            {
                "number": a.number,
                "attempted_at": a.attempted_at,
                "status_code": a.status_code,
                "outcome": a.outcome,
                "error": a.error or None,
                "duration_ms": a.duration_ms,
            }
            for a in d.attempt_log.all()
        ],
    }


def render_alert(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.pk,
        "tenant_id": a.tenant_id,
        "alert_type": a.alert_type,
        "severity": a.severity,
        "status": a.status,
        "title": a.title,
        "message": a.message,
        "resource_id": a.resource_id or None,
        "details": a.details,
        "occurrences": a.occurrences,
        "first_seen_at": a.first_seen_at,
        "last_seen_at": a.last_seen_at,
        "acknowledged_at": a.acknowledged_at,
        "resolved_at": a.resolved_at,
    }


def _q(name: str, description: str, type_: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description)


PAGE = [_q("page", "page number (≥1)", int), _q("page_size", "1..1000, default 100", int)]


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _q("event_type", "only subscriptions to this type"),
            _q("enabled", "true | false"),
            *PAGE,
        ],
        responses={200: SubscriptionListOut},
    ),
    create=extend_schema(request=SubscriptionIn, responses={201: SubscriptionCreatedOut}),
    retrieve=extend_schema(responses={200: SubscriptionOut}),
    partial_update=extend_schema(request=SubscriptionIn, responses={200: SubscriptionOut}),
    destroy=extend_schema(responses={204: None}),
)
@extend_schema(tags=["events"])
class SubscriptionViewSet(TenantViewSet):
    """Webhook subscriptions of the caller's tenant (SPEC 7)."""

    roles = {
        "list": READ,
        "retrieve": READ,
        "deliveries": READ,
        "create": WRITE,
        "partial_update": WRITE,
        "destroy": WRITE,
    }

    def list(self, request: Request) -> Response:
        qs = selectors.subscriptions_for(
            tenant_id=self.tenant_id(),
            event_type=_choice(request, "event_type", services.EVENT_TYPES),
            enabled=_bool_param(request, "enabled"),
        )
        return Response(
            paginate(
                request, qs, "subscriptions", lambda rows: [render_subscription(s) for s in rows]
            )
        )

    def create(self, request: Request) -> Response:
        data = SubscriptionIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        sub, secret = services.create_subscription(
            tenant_id=self.tenant_id(),
            event_types=values["event_types"],
            webhook_url=values["webhook_url"],
            filters=values.get("filters") or {},
            enabled=values.get("enabled", True),
            actor=self.principal.actor,
        )
        return Response({**render_subscription(sub), "signing_secret": secret}, status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        sub = selectors.subscription_for(
            tenant_id=self.tenant_id(), subscription_id=self.object_id()
        )
        return Response(render_subscription(sub))

    def partial_update(self, request: Request, pk: str) -> Response:
        subscription_id = self.object_id()
        selectors.subscription_for(tenant_id=self.tenant_id(), subscription_id=subscription_id)
        data = SubscriptionIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k != "tenant_id"}
        sub = services.update_subscription(
            tenant_id=self.tenant_id(),
            subscription_id=subscription_id,
            changes=changes,
            actor=self.principal.actor,
        )
        return Response(render_subscription(sub))

    def destroy(self, request: Request, pk: str) -> Response:
        services.delete_subscription(
            tenant_id=self.tenant_id(), subscription_id=self.object_id(), actor=self.principal.actor
        )
        return Response(status=204)

    @extend_schema(
        parameters=[
            _q("status", "pending | in_flight | delivered | dead_lettered | cancelled"),
            *PAGE,
        ],
        responses={200: DeliveryListOut},
        description="Every delivery of events to this subscription, newest first, each with "
        "its attempts.",
    )
    def deliveries(self, request: Request, pk: str) -> Response:
        qs = selectors.deliveries_for(
            tenant_id=self.tenant_id(),
            subscription_id=self.object_id(),
            status=_choice(request, "status", Delivery.Status.values),
        )
        return Response(
            paginate(request, qs, "deliveries", lambda rows: [render_delivery(d) for d in rows])
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _q("alert_type", "alert type"),
            _q("severity", "info | warning | critical"),
            _q("status", "active | acknowledged | resolved"),
            _q("start_time", "RFC 3339 instant or date: alerts last seen at or after it"),
            _q("end_time", "RFC 3339 instant or date: alerts first seen before it"),
            *PAGE,
        ],
        responses={200: AlertListOut},
    ),
    retrieve=extend_schema(responses={200: AlertOut}),
)
@extend_schema(tags=["alerts"])
class AlertViewSet(TenantViewSet):
    """Alerts of the caller's tenant (SPEC 7); acknowledge and resolve are transitions."""

    roles = {"list": READ, "retrieve": READ, "acknowledge": WRITE, "resolve": WRITE}

    def list(self, request: Request) -> Response:
        start = parse_instant(request.query_params.get("start_time"), "start_time")
        end = parse_instant(request.query_params.get("end_time"), "end_time")
        if start and end and end <= start:
            raise ValidationFailed(
                "end_time must be after start_time",
                details={"end_time": ["must be after start_time"]},
            )
        qs = selectors.alerts_for(
            tenant_id=self.tenant_id(),
            alert_type=_choice(request, "alert_type", services.ALERT_TYPES),
            severity=_choice(request, "severity", Alert.Severity.values),
            status=_choice(request, "status", Alert.Status.values),
            start_time=start,
            end_time=end,
        )
        return Response(
            paginate(request, qs, "alerts", lambda rows: [render_alert(a) for a in rows])
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        alert = selectors.alert_for(tenant_id=self.tenant_id(), alert_id=self.object_id())
        return Response(render_alert(alert))

    def _act(self, request: Request, fn: Any) -> Response:
        alert_id = self.object_id()
        selectors.alert_for(tenant_id=self.tenant_id(), alert_id=alert_id)
        action = AlertActionIn(data=request.data)
        action.is_valid(raise_exception=True)
        alert = fn(
            tenant_id=self.tenant_id(),
            alert_id=alert_id,
            by=self.principal.principal,
            comment=action.validated_data.get("comment", ""),
        )
        return Response(render_alert(alert))

    @extend_schema(request=AlertActionIn, responses={200: AlertOut})
    def acknowledge(self, request: Request, pk: str) -> Response:
        return self._act(request, services.acknowledge_alert)

    @extend_schema(request=AlertActionIn, responses={200: AlertOut})
    def resolve(self, request: Request, pk: str) -> Response:
        return self._act(request, services.resolve_alert)
