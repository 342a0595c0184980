"""Thin views of the quotas API: validate, call a service or selector, render (SPEC 5)."""

from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.errors import ValidationFailed, to_domain_error
from budgeting_site.platform.pagination import paginate
from budgeting_site.platform.permissions import SERVICE, TENANT_ADMIN, TENANT_USER, roles
from budgeting_site.platform.views import ApiView, parse_uuid
from quotas import selectors, services
from quotas.api.serializers import (
    MAX_BATCH,
    AllocateIn,
    BatchItemIn,
    BatchListIn,
    ConsumeIn,
    PoolIn,
    QuotaAllocatedOut,
    QuotaBatchOut,
    QuotaDecisionOut,
    QuotaListOut,
    QuotaOut,
    QuotaPoolOut,
    QuotaUpdateIn,
    bool_param,
    render_instant,
    render_quota,
)
from quotas.exceptions import BatchTooLarge
from quotas.models import AllocationType

READ = roles(TENANT_USER, TENANT_ADMIN, SERVICE)
WRITE = roles(TENANT_ADMIN)
CONSUME = roles(SERVICE, TENANT_ADMIN, TENANT_USER)
#: SPEC 1.4: quota allocations keep their Idempotency-Key for 7 days.
ALLOCATION_IDEMPOTENCY_TTL = timedelta(days=7)
BATCH_OUT = PolymorphicProxySerializer(
    component_name="QuotaBatchAnswer",
    serializers=[QuotaBatchOut, QuotaPoolOut],
    resource_type_field_name=None,
)


def _valid(serializer: serializers.Serializer) -> dict[str, Any]:
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _strategy_dict(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("strategy") is not None:
        data["strategy"] = dict(data["strategy"])
    return data


class AllocateView(ApiView):
    roles = {"post": WRITE}
    idempotency_ttl = ALLOCATION_IDEMPOTENCY_TTL

    @extend_schema(request=AllocateIn, responses={201: QuotaAllocatedOut}, tags=["quotas"])
    def post(self, request: Request) -> Response:
        data = _strategy_dict(_valid(AllocateIn(data=request.data)))
        quota, receipt = services.allocate_quota(
            tenant_id=self.tenant_id(), actor=self.principal.actor, data=data
        )
        return Response(
            {
                "quota_id": str(quota.pk),
                "allocated_at": render_instant(quota.created_at),
                "allocated_amount": quota.allocated_amount,
                "resource_type": quota.resource_type,
                "allocation_type": quota.allocation_type,
                "allocated_to_id": quota.allocated_to_id,
                "used_amount": quota.used_amount,
                "max_burst_amount": quota.max_burst_amount,
                "period_start": render_instant(quota.period_start),
                "period_end": render_instant(quota.period_end),
                "strategy": quota.strategy,
                "receipt_id": str(receipt.receipt_id),
                "correlation_id": current_correlation_id(),
            },
            status=201,
        )


class AllocateBatchView(ApiView):
    roles = {"post": WRITE}
    idempotency_ttl = ALLOCATION_IDEMPOTENCY_TTL

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: BATCH_OUT},
        tags=["quotas"],
        description="Either `{allocations: [...]}` (list form, partial success) or a pool split "
        "(`resource_type, pool_amount, strategy, entities, ...`), all or nothing.",
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("Expected a JSON object")
        if "allocations" in body:
            return self._list_form(body)
        return self._pool_form(body)

    def _list_form(self, body: dict[str, Any]) -> Response:
        raw = body.get("allocations")
        if isinstance(raw, list) and len(raw) > MAX_BATCH:
            raise BatchTooLarge(details={"allocations": [f"at most {MAX_BATCH} items"]})
        raw = _valid(BatchListIn(data=body))["allocations"]
        items: list[services.BatchItem] = []
        for index, item in enumerate(raw):
            key = item.get("idempotency_key") if isinstance(item, dict) else None
            key = key if isinstance(key, str) and 0 < len(key) <= 255 else None
            parsed = BatchItemIn(data=item)
            if parsed.is_valid():
                data = _strategy_dict(dict(parsed.validated_data))
                items.append(services.BatchItem(index, data["idempotency_key"], data=data))
            else:
                error = to_domain_error(serializers.ValidationError(parsed.errors))
                items.append(services.BatchItem(index, key, error=error))
        batch_id, results, receipt = services.allocate_batch(
            tenant_id=self.tenant_id(), actor=self.principal.actor, items=items
        )
        return Response(
            {
                "batch_id": str(batch_id),
                "processed_count": sum(r["status"] == "created" for r in results),
                "duplicate_count": sum(r["status"] == "duplicate" for r in results),
                "failed_count": sum(r["status"] == "failed" for r in results),
                "results": results,
                "receipt_id": str(receipt.receipt_id),
                "correlation_id": current_correlation_id(),
            },
            status=201,
        )

    def _pool_form(self, body: dict[str, Any]) -> Response:
        entities = body.get("entities")
        if isinstance(entities, list) and len(entities) > MAX_BATCH:
            raise BatchTooLarge(
                "A pool is split over at most 100 entities",
                details={"entities": [f"at most {MAX_BATCH} entities"]},
            )
        data = _valid(PoolIn(data=body))
        outcome = services.allocate_pool(
            tenant_id=self.tenant_id(),
            actor=self.principal.actor,
            resource_type=data["resource_type"],
            pool_amount=data["pool_amount"],
            strategy=data["strategy"],
            entities=[
                services.PoolEntity(
                    allocation_type=e.get("allocation_type"),
                    allocated_to_id=e.get("allocated_to_id"),
                    tier=e.get("tier"),
                    reserved_amount=e.get("reserved_amount"),
                )
                for e in data["entities"]
            ],
            period_start=data.get("period_start"),
            period_end=data.get("period_end"),
            tier_shares=data.get("tier_shares"),
            auto_renew=data["auto_renew"],
            renewal_strategy=data["renewal_strategy"],
        )
        allocations = outcome["allocations"]
        return Response(
            {
                "batch_id": str(outcome["batch_id"]),
                "resource_type": data["resource_type"],
                "strategy": data["strategy"],
                "pool_amount": data["pool_amount"],
                "total_allocated": sum(a["allocated_amount"] for a in allocations),
                "period_start": render_instant(outcome["period_start"]),
                "period_end": render_instant(outcome["period_end"]),
                "allocations": [
                    {**a, "receipt_id": str(outcome["receipt"].receipt_id)} for a in allocations
                ],
                "receipt_id": str(outcome["receipt"].receipt_id),
                "correlation_id": current_correlation_id(),
            },
            status=201,
        )


class QuotaListView(ApiView):
    roles = {"get": READ}

    @extend_schema(
        operation_id="quotas_list",
        responses={200: QuotaListOut},
        tags=["quotas"],
        parameters=[
            OpenApiParameter("resource_type", str),
            OpenApiParameter("allocation_type", str, enum=AllocationType.values),
            OpenApiParameter("allocated_to_id", str),
            OpenApiParameter("active_only", bool),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        allocation_type = params.get("allocation_type") or None
        if allocation_type is not None and allocation_type not in AllocationType.values:
            raise ValidationFailed(
                "allocation_type must be tenant, project, user or feature",
                details={"allocation_type": ["not a valid choice"]},
            )
        for name in ("resource_type", "allocated_to_id"):
            value = params.get(name) or ""
            if len(value) > 128:
                raise ValidationFailed(
                    f"{name} is at most 128 characters", details={name: ["too long"]}
                )
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: a 400, not a 500
                raise ValidationFailed(
                    f"{name} must not contain NUL characters",
                    details={name: ["Null characters are not allowed."]},
                )
        quotas = selectors.list_quotas(
            tenant_id=self.tenant_id(),
            now=clock.now(),
            resource_type=params.get("resource_type") or None,
            allocation_type=allocation_type,
            allocated_to_id=params.get("allocated_to_id") or None,
            active_only=bool_param(params.get("active_only"), "active_only"),
        )
        return Response(
            paginate(request, quotas, "quotas", lambda rows: [render_quota(q) for q in rows])
        )


def _if_match(request: Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    text = raw.strip()
    if text == "*":  # RFC 9110: any current representation, i.e. no version precondition
        return None
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > 9:
        raise ValidationFailed(
            "If-Match must carry the quota's version", details={"If-Match": ["not a version"]}
        )
    return int(text)


class QuotaDetailView(ApiView):
    roles = {"get": READ, "patch": WRITE, "put": WRITE, "delete": WRITE}

    @extend_schema(operation_id="quotas_retrieve", responses={200: QuotaOut}, tags=["quotas"])
    def get(self, request: Request, quota_id: str) -> Response:
        quota = selectors.get_quota(
            tenant_id=self.tenant_id(), quota_id=parse_uuid(quota_id, "quota_id")
        )
        return Response(render_quota(quota))

    @extend_schema(request=QuotaUpdateIn, responses={200: QuotaOut}, tags=["quotas"])
    def patch(self, request: Request, quota_id: str) -> Response:
        pk = parse_uuid(quota_id, "quota_id")
        selectors.get_quota(tenant_id=self.tenant_id(), quota_id=pk)  # 404 before 400
        data = _valid(QuotaUpdateIn(data=request.data))
        version = data.pop("version", None)
        header_version = _if_match(request)
        if version is not None and header_version is not None and version != header_version:
            raise ValidationFailed(
                "version and If-Match disagree", details={"version": ["differs from If-Match"]}
            )
        quota = services.update_quota(
            tenant_id=self.tenant_id(),
            quota_id=pk,
            actor=self.principal.actor,
            changes=data,
            expected_version=version if version is not None else header_version,
        )
        return Response(render_quota(quota))

    @extend_schema(request=QuotaUpdateIn, responses={200: QuotaOut}, tags=["quotas"])
    def put(self, request: Request, quota_id: str) -> Response:
        return self.patch(request, quota_id)

    @extend_schema(responses={204: None}, tags=["quotas"])
    def delete(self, request: Request, quota_id: str) -> Response:
        services.delete_quota(
            tenant_id=self.tenant_id(),
            quota_id=parse_uuid(quota_id, "quota_id"),
            actor=self.principal.actor,
        )
        return Response(status=204)


class ConsumeView(ApiView):
    roles = {"post": CONSUME}
    #: forced for /quotas/check
    always_dry_run = False

    @extend_schema(request=ConsumeIn, responses={200: QuotaDecisionOut}, tags=["quotas"])
    def post(self, request: Request) -> Response:
        data = _valid(ConsumeIn(data=request.data))
        answer = services.consume(
            tenant_id=self.tenant_id(),
            actor=self.principal.actor,
            resource_type=data["resource_type"],
            amount=data["amount"],
            allocation_type=data["allocation_type"],
            allocated_to_id=data.get("allocated_to_id"),
            operation_type=data["operation_type"],
            resource_id=data["resource_id"],
            dry_run=self.always_dry_run or data["dry_run"],
        )
        answer["period_end"] = render_instant(answer.get("period_end"))
        return Response(answer)


class CheckView(ConsumeView):
    """`POST /quotas/check`: the same as a dry run; a POST that only reads (read roles)."""

    roles = {"post": READ}
    always_dry_run = True
