"""Rate-limit policies, emergency capacity and the check (SPEC 3): parse, call, render."""

from typing import Any

from django.conf import settings
from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform import idempotency
from budgeting_site.platform.errors import DomainError, Forbidden, RateLimited, ValidationFailed
from budgeting_site.platform.pagination import paginate
from budgeting_site.platform.permissions import (
    AUDITOR,
    SERVICE,
    SYSTEM_ARCHITECT,
    TENANT_ADMIN,
    TENANT_USER,
    roles,
)
from budgeting_site.platform.views import ApiView, TenantViewSet
from ratelimits import selectors, services
from ratelimits.api.serializers import CheckIn, EmergencyCapacityIn, PolicyIn
from ratelimits.models import EmergencyGrant, RateLimitPolicy, ScopeType

READ = roles(TENANT_ADMIN, SYSTEM_ARCHITECT, AUDITOR, SERVICE)
WRITE = roles(TENANT_ADMIN, SYSTEM_ARCHITECT)
EMERGENCY = roles(SYSTEM_ARCHITECT)
CHECK = roles(SERVICE, TENANT_ADMIN, TENANT_USER)
#: A dry run only reads: the read roles may ask too (SPEC 1.1).
CHECK_DRY_RUN = CHECK | READ


def render_policy(p: RateLimitPolicy) -> dict[str, Any]:
    return {
        "policy_id": p.pk,
        "tenant_id": p.tenant_id,
        "policy_name": p.policy_name or None,
        "scope_type": p.scope_type,
        "scope_id": p.scope_id,
        "resource_type": p.resource_type,
        "limit_value": p.limit_value,
        "time_window_seconds": p.time_window_seconds,
        "algorithm": p.algorithm,
        "burst_capacity": p.burst_capacity,
        "overrides": p.overrides,
        "mode": p.mode,
        "fail_mode": p.fail_mode,
        "enabled": p.enabled,
        "usage_factor": p.usage_factor,
        "version": p.version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def render_grant(g: EmergencyGrant) -> dict[str, Any]:
    return {
        "grant_id": g.pk,
        "policy_id": g.policy_id,
        "extra_requests": g.extra_requests,
        "duration_seconds": g.duration_seconds,
        "reason": g.reason,
        "status": g.status,
        "approval_id": g.approval_id,
        "starts_at": g.starts_at,
        "ends_at": g.ends_at,
        "created_at": g.created_at,
    }


def _choice(request: Request, name: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(allowed)}",
            details={name: [f"must be one of {', '.join(allowed)}"]},
        )
    return value


def _q(name: str, description: str, type_: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description)


PAGE = [_q("page", "page number (≥1)", int), _q("page_size", "1..1000, default 100", int)]
OBJ = {200: OpenApiTypes.OBJECT}


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _q("scope_type", "tenant | project | user | feature"),
            _q("scope_id", "the scope's id"),
            _q("resource_type", "the resource type"),
            *PAGE,
        ],
        responses=OBJ,
    ),
    create=extend_schema(request=PolicyIn, responses={201: OpenApiTypes.OBJECT}),
    retrieve=extend_schema(responses=OBJ),
    update=extend_schema(request=PolicyIn, responses=OBJ),
    destroy=extend_schema(responses={204: None}),
    emergency_capacity=extend_schema(request=EmergencyCapacityIn, responses=OBJ),
)
@extend_schema(tags=["rate-limits"])
class PolicyViewSet(TenantViewSet):
    roles = {
        "list": READ,
        "retrieve": READ,
        "create": WRITE,
        "update": WRITE,
        "destroy": WRITE,
        "emergency_capacity": EMERGENCY,
    }

    def list(self, request: Request) -> Response:
        qs = selectors.list_policies(
            tenant_id=self.tenant_id(),
            scope_type=_choice(request, "scope_type", list(ScopeType.values)),
            scope_id=request.query_params.get("scope_id") or None,
            resource_type=request.query_params.get("resource_type") or None,
        )
        return Response(
            paginate(request, qs, "policies", lambda rows: [render_policy(p) for p in rows])
        )

    def create(self, request: Request) -> Response:
        data = PolicyIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = {k: v for k, v in data.validated_data.items() if k not in {"tenant_id", "version"}}
        policy = services.policy_create(
            tenant_id=self.tenant_id(), data=values, actor=self.principal.actor
        )
        return Response(render_policy(policy), status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        policy = selectors.get_policy(tenant_id=self.tenant_id(), policy_id=self.object_id())
        return Response(render_policy(policy))

    def update(self, request: Request, pk: str) -> Response:
        policy_id = self.object_id()
        selectors.get_policy(tenant_id=self.tenant_id(), policy_id=policy_id)
        data = PolicyIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        # PUT replaces the definition: optional fields left out take their defaults, as the
        # ones with a serializer default (mode, fail_mode, burst_capacity, ...) already do.
        values.setdefault("overrides", {})
        values.setdefault("policy_name", "")
        expected = values.pop("version", None)
        if_match = request.headers.get("If-Match")
        if expected is None and if_match:
            try:
                expected = int(if_match.strip().strip('"').removeprefix("W/").strip('"'))
            except ValueError as exc:
                raise ValidationFailed(
                    "If-Match must be the policy's version", details={"If-Match": ["not a version"]}
                ) from exc
        values.pop("tenant_id", None)
        policy = services.policy_update(
            tenant_id=self.tenant_id(),
            policy_id=policy_id,
            data=values,
            expected_version=expected,
            actor=self.principal.actor,
        )
        return Response(render_policy(policy))

    def destroy(self, request: Request, pk: str) -> Response:
        services.policy_delete(
            tenant_id=self.tenant_id(), policy_id=self.object_id(), actor=self.principal.actor
        )
        return Response(status=204)

    def emergency_capacity(self, request: Request, pk: str) -> Response:
        policy_id = self.object_id()
        selectors.get_policy(tenant_id=self.tenant_id(), policy_id=policy_id)
        data = EmergencyCapacityIn(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = services.emergency_capacity_request(
            tenant_id=self.tenant_id(),
            policy_id=policy_id,
            extra_requests=data.validated_data["extra_requests"],
            duration_seconds=data.validated_data["duration_seconds"],
            reason=data.validated_data["reason"],
            principal=self.principal,
        )
        body = render_grant(outcome.grant)
        body["requires_approval"] = outcome.approval_id is not None
        body["receipt_id"] = outcome.receipt_id
        return Response(body, status=200)


@extend_schema(
    tags=["rate-limits"],
    request=CheckIn,
    responses={200: OpenApiTypes.OBJECT, 429: OpenApiTypes.OBJECT},
)
class CheckView(ApiView):
    """`POST /rate-limits/check`: the whole decision in one store round trip.

    Order of checks (SPEC 1.3: 401 → 429 → 403 → 400 → 422). Where this API's own limit rides
    in the check's store round trip (Redis), a request refused before that round trip (403,
    400, ...) asks this API's own limit alone first, so an exhausted caller gets its 429 and
    every authenticated answer carries the limit's headers. Where it lives in another store
    (the embedded default keeps it in memory), the platform enforces it in its usual place.
    """

    roles = {"post": CHECK_DRY_RUN}
    rate_limit_class = "rate_limit_check"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase | None:
        # This API's own limit is decided inside the check's own store round trip when the
        # policy store also holds this API's limits.
        self.api_limit_in_handler = services.api_limit_rides_with_check()
        try:
            return super().initial(request, *args, **kwargs)
        except (DomainError, APIException) as exc:
            self._api_limit_before_refusal(exc)
            raise

    def _api_limit_before_refusal(self, exc: DomainError | APIException) -> None:
        status = exc.status if isinstance(exc, DomainError) else exc.status_code
        if (
            not self.api_limit_in_handler
            or settings.API_RATE_LIMITS is None
            or status in (401, 405, 429)
            or getattr(self.request, "user", None) is None
        ):
            return
        allowed, headers = services.enforce_api_limit(
            tenant_id=self.principal.tenant_id, limit_class=self.rate_limit_class
        )
        if not allowed:
            raise RateLimited(
                "This API's rate limit for your tenant is exhausted",
                details={"limit_class": self.rate_limit_class},
                headers=headers,
            ) from exc
        self._extra_headers.update(headers)

    def _begin_idempotency(self, request: Request) -> Any:
        # Stores that keep the key inside the check's own atomic step (Redis, memory) need no
        # table row: the script checks, decides and stores in one round trip.
        self._check_idempotency: tuple[str, str] | None = None
        if not services.store_keeps_idempotency():
            return super()._begin_idempotency(request)
        key = idempotency.key_from(request.META)
        if key is not None:
            django_request = request._request
            self._check_idempotency = (
                key,
                idempotency.fingerprint(
                    request.method,
                    request.path,
                    django_request.META.get("QUERY_STRING", ""),
                    django_request.body,
                ),
            )
        return None

    def post(self, request: Request) -> Response:
        try:
            req = self._parse(request)
        except (DomainError, APIException) as exc:
            self._api_limit_before_refusal(exc)
            raise
        keyed = getattr(self, "_check_idempotency", None)
        answer = services.check(
            req=req,
            principal=self.principal,
            with_api_limit=self.api_limit_in_handler and settings.API_RATE_LIMITS is not None,
            idempotency_key=keyed[0] if keyed else None,
            fingerprint=keyed[1] if keyed else None,
        )
        if answer.api_limited:
            raise RateLimited(
                "This API's rate limit for your tenant is exhausted",
                details={"limit_class": self.rate_limit_class},
                headers=answer.headers,
            )
        return Response(answer.body, status=answer.status, headers=answer.headers)

    def _parse(self, request: Request) -> services.CheckRequest:
        # The read roles may only dry-run (SPEC 1.1): that 403 comes before any 400 of the
        # body, so it is decided from the raw flag.
        if not self.principal.has_any(CHECK):
            raw = request.data.get("dry_run") if isinstance(request.data, dict) else None
            if raw not in serializers.BooleanField.TRUE_VALUES:
                raise Forbidden("Your roles allow only a dry run of this check")
        data = CheckIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        scopes = dict(values.get("scopes") or {})
        scopes.pop("tenant", None)
        if "scope_type" in values and values["scope_type"] != ScopeType.TENANT:
            scopes[values["scope_type"]] = values["scope_id"]
        return services.CheckRequest(
            tenant_id=self.tenant_id(),
            resource_type=values["resource_type"],
            request_count=values["request_count"],
            priority=values["priority"],
            resource_key=values.get("resource_key") or None,
            scopes=scopes,
            dry_run=values["dry_run"],
        )
