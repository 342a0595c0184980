"""Budget endpoints (SPEC 2): thin views that parse, call a service or selector, and render."""

import json
import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform import clock
from budgeting_site.platform.errors import PayloadTooLarge, ValidationFailed
from budgeting_site.platform.pagination import paginate
from budgeting_site.platform.permissions import (
    AUDITOR,
    FINANCIAL_CONTROLLER,
    SERVICE,
    TENANT_ADMIN,
    TENANT_USER,
    roles,
)
from budgeting_site.platform.views import ApiView, parse_uuid
from budgets import selectors, services
from budgets.api.serializers import (
    BudgetCreateInput,
    BudgetListQuery,
    BudgetReplaceInput,
    CheckBatchInput,
    CheckItemInput,
    CommitInput,
    DeleteQuery,
    EmptyInput,
    ExtendInput,
    PageQuery,
    render_budget,
    render_reservation,
)
from budgets.services.check import MAX_BATCH, CheckInput

OBJ = {200: OpenApiTypes.OBJECT}
PAGE = [
    OpenApiParameter("page", int, description="≥ 1, default 1"),
    OpenApiParameter("page_size", int, description="1..1000, default 100"),
]


def _q(name: str, description: str, kind: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, description=description)


READ = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR, SERVICE)
WRITE = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER)
HOLD_WRITE = roles(SERVICE, TENANT_ADMIN)
CHECK = roles(SERVICE, TENANT_ADMIN, TENANT_USER)


def _query(serializer_class: Any, request: Request) -> dict[str, Any]:
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data


def _body(serializer_class: Any, request: Request) -> dict[str, Any]:
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data


def _etag(response: Response, version: int) -> Response:
    response["ETag"] = f'"{version}"'
    return response


def _render_with_period(budgets: Any) -> list[dict[str, Any]]:
    budgets = list(budgets)
    current = selectors.current_periods(budgets, clock.now())
    return [render_budget(b, current[b.pk]) for b in budgets]


@extend_schema(tags=["budgets"])
class BudgetListView(ApiView):
    roles = {"get": READ, "post": WRITE}

    @extend_schema(
        parameters=[
            _q("budget_type", "filter"),
            _q("allocated_to_type", "tenant | project | user | feature"),
            _q("allocated_to_id", "filter"),
            _q("active_only", "within its dates now", bool),
            *PAGE,
        ],
        responses=OBJ,
    )
    def get(self, request: Request) -> Response:
        query = _query(BudgetListQuery, request)
        budgets = selectors.list_budgets(
            tenant_id=self.tenant_id(),
            budget_type=query.get("budget_type"),
            allocated_to_type=query.get("allocated_to_type"),
            allocated_to_id=query.get("allocated_to_id"),
            active_only=query.get("active_only", False),
        )
        return Response(paginate(request, budgets, "budgets", _render_with_period))

    @extend_schema(request=BudgetCreateInput, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        data = _body(BudgetCreateInput, request)
        data.pop("tenant_id", None)
        budget = services.create_budget(tenant_id=self.tenant_id(), data=data, actor=self.principal)
        response = Response(_render_with_period([budget])[0], status=201)
        response["Location"] = f"/budget/v1/budgets/{budget.pk}"
        return _etag(response, budget.version)


_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')


@extend_schema(tags=["budgets"])
class BudgetDetailView(ApiView):
    roles = {"get": READ, "put": WRITE, "delete": WRITE}

    @extend_schema(responses=OBJ)
    def get(self, request: Request, budget_id: str) -> Response:
        budget = selectors.get_budget(
            tenant_id=self.tenant_id(), budget_id=parse_uuid(budget_id, "budget_id")
        )
        _query(PageQuery, request)
        return _etag(Response(_render_with_period([budget])[0]), budget.version)

    @extend_schema(request=BudgetReplaceInput, responses=OBJ)
    def put(self, request: Request, budget_id: str) -> Response:
        parsed = parse_uuid(budget_id, "budget_id")
        selectors.get_budget(tenant_id=self.tenant_id(), budget_id=parsed)  # 404 before 400
        data = _body(BudgetReplaceInput, request)
        version = data.pop("version", None)
        if version is None:
            header = request.headers.get("If-Match")
            match = _IF_MATCH.match(header) if header else None
            if header and match is None:
                raise ValidationFailed(
                    "If-Match must carry the budget's version",
                    details={"If-Match": ['must be the version, e.g. "3"']},
                )
            version = int(match.group(1)) if match else None
        if version is None:
            raise ValidationFailed(
                "version (or If-Match) is required to replace a budget",
                details={"version": ["This field is required."]},
            )
        budget = services.update_budget(
            tenant_id=self.tenant_id(),
            budget_id=parsed,
            data=data,
            version=version,
            actor=self.principal,
        )
        return _etag(Response(_render_with_period([budget])[0]), budget.version)

    @extend_schema(
        parameters=[_q("force", "tenant_admin only: delete in use, releasing holds", bool)],
        responses={204: None},
    )
    def delete(self, request: Request, budget_id: str) -> Response:
        parsed = parse_uuid(budget_id, "budget_id")
        selectors.get_budget(tenant_id=self.tenant_id(), budget_id=parsed)
        query = _query(DeleteQuery, request)
        services.delete_budget(
            tenant_id=self.tenant_id(),
            budget_id=parsed,
            force=query.get("force", False),
            actor=self.principal,
        )
        return Response(status=204)


@extend_schema(tags=["budgets"])
class BudgetUtilizationView(ApiView):
    roles = {"get": READ}

    @extend_schema(parameters=PAGE, responses=OBJ)
    def get(self, request: Request, budget_id: str) -> Response:
        budget = selectors.get_budget(
            tenant_id=self.tenant_id(), budget_id=parse_uuid(budget_id, "budget_id")
        )
        _query(PageQuery, request)
        rows = selectors.utilization_rows(budget, clock.now())
        extra = {"budget_id": budget.pk, "currency": budget.currency}
        return Response(paginate(request, rows, "utilization", list, extra=extra))


# --- Checks ---------------------------------------------------------------------------------


def _wants_dry_run(request: Request) -> bool:
    # Read the raw bytes, not request.data: DRF would remember a malformed body as empty, and
    # the platform reports it after 401/403.
    try:
        data = json.loads(request._request.body or b"{}")
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    if data.get("dry_run") is True:
        return True
    checks = data.get("checks")
    return (
        isinstance(checks, list)
        and bool(checks)
        and all(isinstance(c, dict) and c.get("dry_run") is True for c in checks)
    )


class _CheckRoles:
    """A check needs the check roles; a dry run only reads, so it needs the read roles."""

    request: Request

    @property
    def roles(self) -> dict[str, Any]:
        request = getattr(self, "request", None)
        if request is not None and _wants_dry_run(request):
            return {"post": READ}
        return {"post": CHECK}


def _to_check(data: dict[str, Any]) -> CheckInput:
    return CheckInput(
        estimated_cost=data["estimated_cost"],
        resource_type=data.get("resource_type") or "",
        currency=data.get("currency") or "",
        allocated_to_type=data.get("allocated_to_type") or "",
        allocated_to_id=data.get("allocated_to_id") or "",
        operation_context=data.get("operation_context") or {},
        approval_id=data.get("approval_id"),
        hold_ttl_seconds=data.get("hold_ttl_seconds") or 900,
    )


@extend_schema(tags=["budgets"])
class BudgetCheckView(_CheckRoles, ApiView):  # type: ignore[override]
    rate_limit_class = "budget_check"

    @extend_schema(request=CheckItemInput, responses=OBJ)
    def post(self, request: Request) -> Response:
        data = _body(CheckItemInput, request)
        result = services.check_budget(
            tenant_id=self.tenant_id(),
            check=_to_check(data),
            principal=self.principal,
            dry_run=data.get("dry_run", False),
        )
        return Response(result)


@extend_schema(tags=["budgets"])
class BudgetCheckBatchView(_CheckRoles, ApiView):  # type: ignore[override]
    rate_limit_class = "budget_check"

    @extend_schema(request=CheckBatchInput, responses=OBJ)
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict):
            checks = request.data.get("checks")
            if isinstance(checks, list) and len(checks) > MAX_BATCH:
                raise PayloadTooLarge(
                    f"A batch holds at most {MAX_BATCH} checks",
                    details={"checks": [f"at most {MAX_BATCH} items"], "count": len(checks)},
                )
        body = _body(CheckBatchInput, request)
        items = []
        errors: dict[str, Any] = {}
        dry_flags = set()
        for index, raw in enumerate(body["checks"]):
            item = CheckItemInput(data=raw)
            if not item.is_valid():
                errors[str(index)] = item.errors
                continue
            items.append(item.validated_data)
            dry_flags.add(item.validated_data.get("dry_run", False))
        if errors:
            raise serializers.ValidationError({"checks": errors})
        if len(dry_flags) > 1:
            raise ValidationFailed(
                "dry_run must be the same for every check of a batch",
                details={"dry_run": ["mixed values in one batch"]},
            )
        dry_run = body.get("dry_run", False) or dry_flags == {True}
        result = services.check_budget_batch(
            tenant_id=self.tenant_id(),
            checks=[_to_check(item) for item in items],
            principal=self.principal,
            dry_run=dry_run,
        )
        return Response(result)


# --- Holds ----------------------------------------------------------------------------------


@extend_schema(tags=["budgets"])
class ReservationDetailView(ApiView):
    roles = {"get": READ}

    @extend_schema(responses=OBJ)
    def get(self, request: Request, reservation_id: str) -> Response:
        reservation = selectors.get_reservation(
            tenant_id=self.tenant_id(),
            reservation_id=parse_uuid(reservation_id, "reservation_id"),
        )
        return Response(render_reservation(reservation, selectors.reservation_lines(reservation)))


@extend_schema(tags=["budgets"])
class _HoldActionView(ApiView):
    roles = {"post": HOLD_WRITE}
    input_serializer: Any = EmptyInput

    def act(self, reservation_id: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def post(self, request: Request, reservation_id: str) -> Response:
        parsed = parse_uuid(reservation_id, "reservation_id")
        selectors.get_reservation(tenant_id=self.tenant_id(), reservation_id=parsed)
        data = _body(self.input_serializer, request)
        reservation, receipt_id = self.act(parsed, data)
        lines = selectors.reservation_lines(reservation)
        return Response(render_reservation(reservation, lines, receipt_id))


class ReservationCommitView(_HoldActionView):
    input_serializer = CommitInput

    @extend_schema(request=CommitInput, responses=OBJ)
    def post(self, request: Request, reservation_id: str) -> Response:
        return super().post(request, reservation_id)

    def act(self, reservation_id: Any, data: dict[str, Any]) -> Any:
        return services.commit_reservation(
            tenant_id=self.tenant_id(),
            reservation_id=reservation_id,
            actual_cost=data["actual_cost"],
            currency=data.get("currency") or "",
            actor=self.principal.actor,
        )


class ReservationReleaseView(_HoldActionView):
    @extend_schema(request=EmptyInput, responses=OBJ)
    def post(self, request: Request, reservation_id: str) -> Response:
        return super().post(request, reservation_id)

    def act(self, reservation_id: Any, data: dict[str, Any]) -> Any:
        return services.release_reservation(
            tenant_id=self.tenant_id(), reservation_id=reservation_id, actor=self.principal.actor
        )


class ReservationExtendView(_HoldActionView):
    input_serializer = ExtendInput

    @extend_schema(request=ExtendInput, responses=OBJ)
    def post(self, request: Request, reservation_id: str) -> Response:
        return super().post(request, reservation_id)

    def act(self, reservation_id: Any, data: dict[str, Any]) -> Any:
        return services.extend_reservation(
            tenant_id=self.tenant_id(),
            reservation_id=reservation_id,
            hold_ttl_seconds=data["hold_ttl_seconds"],
            actor=self.principal.actor,
        )
