"""Receipts API (SPEC 6): list, read, public keys, verify."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform.errors import ValidationFailed
from budgeting_site.platform.pagination import page_params, paginate
from budgeting_site.platform.params import parse_instant
from budgeting_site.platform.permissions import AUDITOR, FINANCIAL_CONTROLLER, TENANT_ADMIN, roles
from budgeting_site.platform.views import ApiView, parse_uuid
from receipts import selectors, services
from receipts.api.serializers import (
    ReceiptListOut,
    ReceiptOut,
    ReceiptVerdictOut,
    SigningKeysOut,
)
from receipts.services import DECISION_STATUSES, GATE_IDS

READ = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR)


def _choice(request: Request, name: str, allowed: frozenset[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(sorted(allowed))}",
            details={name: [f"must be one of {', '.join(sorted(allowed))}"]},
        )
    return value


def _q(name: str, description: str, type_: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description)


LIST_PARAMS = [
    _q("gate_id", "one of the gate ids of SPEC 6"),
    _q("decision", "pass | warn | soft_block | hard_block"),
    _q("start_time", "RFC 3339 instant or date; receipts at or after it"),
    _q("end_time", "RFC 3339 instant or date; receipts before it"),
    _q("page", "page number (≥1)", int),
    _q("page_size", "1..1000, default 100", int),
    _q("cursor", "keyset paging: empty to start, then the previous answer's next_cursor"),
]


class ReceiptListView(ApiView):
    """The tenant's receipts, newest first: page numbers, or a cursor for long walks."""

    roles = {"get": READ}

    @extend_schema(
        operation_id="receipts_list",
        parameters=LIST_PARAMS,
        responses={200: ReceiptListOut},
        tags=["receipts"],
    )
    def get(self, request: Request) -> Response:
        start = parse_instant(request.query_params.get("start_time"), "start_time")
        end = parse_instant(request.query_params.get("end_time"), "end_time")
        if start and end and end <= start:
            raise ValidationFailed(
                "end_time must be after start_time",
                details={"end_time": ["must be after start_time"]},
            )
        qs = selectors.receipts_for(
            tenant_id=self.tenant_id(),
            gate_id=_choice(request, "gate_id", GATE_IDS),
            decision=_choice(request, "decision", DECISION_STATUSES),
            start_time=start,
            end_time=end,
        )
        if "cursor" in request.query_params:
            return Response(self._cursor_page(request, qs))
        return Response(paginate(request, qs, "receipts", _render))

    def _cursor_page(self, request: Request, qs: Any) -> dict[str, Any]:
        _, page_size = page_params(request)
        cursor = request.query_params.get("cursor") or ""
        if cursor:
            qs = selectors.after_cursor(qs, cursor)
        window = list(qs[: page_size + 1])
        more = len(window) > page_size
        window = window[:page_size]
        return {
            "receipts": _render(window),
            "next_cursor": selectors.encode_cursor(window[-1]) if more else None,
            # The shape of SPEC 1.4; a cursor walk has no page number, and is not counted (a
            # count would make every page of a long walk cost as much as the whole table).
            "pagination": {
                "page": None,
                "page_size": page_size,
                "total_count": None,
                "total_pages": None,
            },
        }


def _render(rows: Any) -> list[dict[str, Any]]:
    return [row.as_dict() for row in rows]


class ReceiptDetailView(ApiView):
    """Exactly the signed object: every field but `signature` is covered by it."""

    roles = {"get": READ}

    @extend_schema(operation_id="receipts_retrieve", responses={200: ReceiptOut}, tags=["receipts"])
    def get(self, request: Request, receipt_id: str) -> Response:
        receipt = selectors.receipt_for(
            tenant_id=self.tenant_id(), receipt_id=parse_uuid(receipt_id, "receipt_id")
        )
        return Response(receipt.as_dict())


class ReceiptKeysView(ApiView):
    """Public: every signing key as an RFC 8037 JWK, with its status and validity."""

    roles = {"get": None}
    authentication_classes: list = []

    @extend_schema(auth=[], responses={200: SigningKeysOut}, tags=["receipts"])
    def get(self, request: Request) -> Response:
        return Response(selectors.public_jwks())


class ReceiptVerifyView(ApiView):
    """A POST that only reads: the read roles (SPEC 1.1). Any receipt may be checked, also
    another tenant's: verifying reveals nothing the published keys do not."""

    roles = {"post": READ}
    body_names_acting_tenant = False

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: ReceiptVerdictOut},
        tags=["receipts"],
        description="The receipt object as the body (any object is accepted: what is not a "
        "well-formed receipt is `valid: false`).",
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed(
                "The body must be a receipt object",
                details={"non_field_errors": ["Expected a JSON object"]},
            )
        verdict = services.verify_receipt_object(body)
        return Response({"valid": verdict.valid, "reason": verdict.reason})
