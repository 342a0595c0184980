"""GET /approvals, GET /approvals/{id}, POST /approvals/{id}/approve|reject (SPEC 2.5)."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from approvals import selectors, services
from approvals.api.serializers import (
    ApproveInput,
    ListQuery,
    RejectInput,
    render_approval,
)
from approvals.exceptions import NotAnApprover
from budgeting_site.platform.pagination import paginate
from budgeting_site.platform.permissions import AUDITOR, FINANCIAL_CONTROLLER, TENANT_ADMIN, roles
from budgeting_site.platform.views import ApiView, parse_uuid

READ = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR)
# tenant_admin reaches the service, which refuses it unless APPROVALS_ALLOW_TENANT_ADMIN.
DECIDE = roles(FINANCIAL_CONTROLLER, TENANT_ADMIN)


def _render_all(rows: Any) -> list[dict[str, Any]]:
    return [render_approval(a) for a in rows]


OBJ = {200: OpenApiTypes.OBJECT}


@extend_schema(tags=["approvals"])
class ApprovalListView(ApiView):
    roles = {"get": READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="pending | approved | rejected | ..."),
            OpenApiParameter("kind", str, description="budget_overrun | emergency_capacity"),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses=OBJ,
    )
    def get(self, request: Request) -> Response:
        query = ListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        approvals = selectors.list_approvals(
            tenant_id=self.tenant_id(),
            status=query.validated_data.get("status"),
            kind=query.validated_data.get("kind"),
        )
        return Response(
            paginate(
                request, approvals, "approvals", lambda rows: [render_approval(a) for a in rows]
            )
        )


@extend_schema(tags=["approvals"])
class ApprovalDetailView(ApiView):
    roles = {"get": READ}

    @extend_schema(responses=OBJ)
    def get(self, request: Request, approval_id: str) -> Response:
        approval = selectors.get_approval(
            tenant_id=self.tenant_id(), approval_id=parse_uuid(approval_id, "approval_id")
        )
        return Response(render_approval(approval))


@extend_schema(tags=["approvals"])
class _DecisionView(ApiView):
    roles = {"post": DECIDE}
    input_serializer: Any = None

    def decide(self, approval_id: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def post(self, request: Request, approval_id: str) -> Response:
        # 403 before 404 (SPEC 1.3): tenant_admin is an approver only when configured.
        if not self.principal.has_any(services.approver_roles()):
            raise NotAnApprover()
        parsed_id = parse_uuid(approval_id, "approval_id")
        # 404 before 400: the request must exist before its body is judged.
        selectors.get_approval(tenant_id=self.tenant_id(), approval_id=parsed_id)
        body = self.input_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        approval = self.decide(parsed_id, body.validated_data)
        return Response(render_approval(approval))


class ApproveView(_DecisionView):
    input_serializer = ApproveInput

    @extend_schema(request=ApproveInput, responses=OBJ)
    def post(self, request: Request, approval_id: str) -> Response:
        return super().post(request, approval_id)

    def decide(self, approval_id: Any, data: dict[str, Any]) -> Any:
        return services.approve(
            tenant_id=self.tenant_id(),
            approval_id=approval_id,
            approver=self.principal,
            comment=data.get("comment", ""),
            approved_amount=data.get("approved_amount"),
        )


class RejectView(_DecisionView):
    input_serializer = RejectInput

    @extend_schema(request=RejectInput, responses=OBJ)
    def post(self, request: Request, approval_id: str) -> Response:
        return super().post(request, approval_id)

    def decide(self, approval_id: Any, data: dict[str, Any]) -> Any:
        return services.reject(
            tenant_id=self.tenant_id(),
            approval_id=approval_id,
            approver=self.principal,
            comment=data.get("comment", ""),
        )
