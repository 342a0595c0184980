"""Cost endpoints (SPEC 4): parse, call a service or selector, render."""

import csv
import io
import math
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.errors import Forbidden, ValidationFailed
from budgeting_site.platform.pagination import page_params, paginate
from budgeting_site.platform.permissions import (
    AUDITOR,
    FINANCIAL_CONTROLLER,
    SERVICE,
    TENANT_ADMIN,
    TENANT_USER,
    roles,
)
from budgeting_site.platform.renderers import plain_decimal
from budgeting_site.platform.views import ApiView, parse_uuid
from costs import selectors, services
from costs.api import params
from costs.api.serializers import (
    AllocationIn,
    BatchOut,
    RecordAccepted,
    RecordIn,
    RecordOut,
    RecordsPageOut,
    ReportOut,
    ReverseIn,
)

READ = roles(TENANT_USER, TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR, SERVICE)
RECORD = roles(SERVICE, TENANT_ADMIN)
CORRECT = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER)
CSV_EXPORT = roles(TENANT_ADMIN, FINANCIAL_CONTROLLER, AUDITOR)

_RECORD_PARAMS = [
    OpenApiParameter("start_time", str),
    OpenApiParameter("end_time", str),
    OpenApiParameter("resource_type", str),
    OpenApiParameter("attributed_to_type", str),
    OpenApiParameter("attributed_to_id", str),
    OpenApiParameter("service_name", str),
    OpenApiParameter("region", str),
    OpenApiParameter("tag", str, many=True, description="key:value, repeatable"),
    OpenApiParameter("group_by", str, description="comma-separated dimensions"),
    OpenApiParameter("currency", str),
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int),
    OpenApiParameter("cursor", str),
]


class RecordView(ApiView):
    roles = {"post": RECORD}
    rate_limit_class = "cost_record"

    @extend_schema(request=RecordIn, responses={202: RecordAccepted}, tags=["costs"])
    def post(self, request: Request) -> Response:
        outcome = services.record_cost(
            tenant_id=self.tenant_id(), data=request.data, actor=self.principal.actor
        )
        record = outcome.record
        return Response(
            {
                "record_id": record.record_id,
                "recorded_at": record.recorded_at,
                "cost_amount": record.cost_amount,
                "currency": record.currency,
                "receipt_id": record.receipt_id,
                "duplicate": not outcome.created,
                "correlation_id": current_correlation_id(),
            },
            status=202,
        )


class RecordBatchView(ApiView):
    roles = {"post": RECORD}
    rate_limit_class = "cost_record"

    @extend_schema(responses={202: BatchOut}, tags=["costs"])
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("Expected a JSON object", details={"records": ["required"]})
        unknown = sorted(set(body) - {"records", "tenant_id"})
        if unknown:
            raise ValidationFailed(
                f"{unknown[0]}: Unknown field", details={n: ["Unknown field"] for n in unknown}
            )
        if "records" not in body:
            raise ValidationFailed("records: This field is required", details={"records": []})
        outcome = services.record_batch(
            tenant_id=self.tenant_id(), items=body["records"], actor=self.principal.actor
        )
        return Response(
            {
                "batch_id": outcome.batch_id,
                "processed_count": outcome.processed_count,
                "duplicate_count": outcome.duplicate_count,
                "failed_count": outcome.failed_count,
                "results": [r.as_dict() for r in outcome.results],
                "receipt_id": outcome.receipt_id,
                "correlation_id": current_correlation_id(),
            },
            status=202,
        )


class RecordsView(ApiView):
    """GET /cost-tracking/records and GET /cost-tracking."""

    roles = {"get": READ}

    @extend_schema(parameters=_RECORD_PARAMS, responses={200: RecordsPageOut}, tags=["costs"])
    def get(self, request: Request) -> Response:
        tenant_id = self.tenant_id()
        query = request.query_params
        filters = params.record_filters(query)
        group_by = params.group_by(query.get("group_by")) or []
        currency = params.currency(query.get("currency"), selectors.default_currency(tenant_id))
        qs = selectors.records_queryset(tenant_id, filters)
        extra = selectors.aggregated(tenant_id, filters, currency, group_by)
        # Every match = the counted ones (already summed from the rollups in `aggregated`)
        # + the few left out of totals (a small partial index): no COUNT over millions.
        total = extra["aggregated"]["record_count"] + qs.filter(counted=False).count()
        page, page_size = page_params(request)
        cursor = query.get("cursor")
        if cursor:
            window = list(selectors.after_cursor(qs, cursor)[:page_size])
            page_number: int | None = None
        else:
            start = (page - 1) * page_size
            window = list(qs[start : start + page_size]) if start < total else []
            page_number = page
        body: dict[str, Any] = {
            "records": [selectors.record_dict(r) for r in window],
            "pagination": {
                "page": page_number,
                "page_size": page_size,
                "total_count": total,
                "total_pages": math.ceil(total / page_size) if total else 0,
            },
            **extra,
        }
        records = body["records"]
        full = len(records) == body["pagination"]["page_size"]
        body["next_cursor"] = (
            selectors.encode_cursor(records[-1]["timestamp"], records[-1]["record_id"])
            if records and full
            else None
        )
        return Response(body)


class RecordDetailView(ApiView):
    roles = {"get": READ}

    @extend_schema(responses={200: RecordOut}, tags=["costs"])
    def get(self, request: Request, record_id: str) -> Response:
        record = selectors.get_record(
            tenant_id=self.tenant_id(), record_id=parse_uuid(record_id, "record_id")
        )
        return Response(selectors.record_dict(record))


class ReverseView(ApiView):
    roles = {"post": CORRECT}

    @extend_schema(request=ReverseIn, responses={202: RecordOut}, tags=["costs"])
    def post(self, request: Request, record_id: str) -> Response:
        rid = parse_uuid(record_id, "record_id")
        # Another tenant's (or no) record is a 404 before the body is judged (SPEC 1.3).
        selectors.get_record(tenant_id=self.tenant_id(), record_id=rid)
        data = ReverseIn(data=request.data)
        data.is_valid(raise_exception=True)
        reversal = services.reverse_record(
            tenant_id=self.tenant_id(),
            record_id=rid,
            reason=data.validated_data["reason"],
            actor=self.principal.actor,
        )
        body = selectors.record_dict(reversal)
        body["correlation_id"] = current_correlation_id()
        return Response(body, status=202)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(plain_decimal(value), "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text.replace("+00:00", "Z")
    text = str(value)
    # Spreadsheets run cells that start like a formula; quote them (OWASP CSV injection).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def report_csv(report: dict[str, Any]) -> HttpResponse:
    columns = [*report["group_by"]]
    if report["report_type"] == "detailed":
        columns += ["original_cost", "original_currency"]
    columns += ["total_cost", "usage_quantity", "record_count", "share"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in report["breakdown"]:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="cost-report-{report["report_type"]}-{report["report_id"]}.csv"'
    )
    response["X-Report-Total-Cost"] = _csv_cell(report["total_cost"])
    response["X-Report-Currency"] = report["currency"]
    return response


#: JSON by default; CSV (`format=csv` or `Accept: text/csv`) for roles that may export it.
REPORT_RESPONSES = {(200, "application/json"): ReportOut, (200, "text/csv"): str}


class ReportsView(ApiView):
    roles = {"get": READ, "post": READ}
    rate_limit_class = "cost_report"

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # CSV is chosen by `format` or the Accept header in the handler; everything else
        # (errors included) is JSON, whatever the Accept header says.
        return super().perform_content_negotiation(request, force=True)

    def _answer(self, request: Request, source: Any, tag_values: list[Any], strict: bool) -> Any:
        tenant_id = self.tenant_id()
        fmt = params.output_format(source.get("format"), request.META.get("HTTP_ACCEPT", ""))
        if fmt == "csv" and not self.principal.has_any(CSV_EXPORT):
            raise Forbidden("Your roles do not allow CSV export")
        req = params.report_request(
            source,
            tenant_id=tenant_id,
            default_currency=selectors.default_currency(tenant_id),
            now=clock.now(),
            tag_values=tag_values,
            strict=strict,
        )
        report = selectors.build_report(req)
        if fmt == "csv":
            return report_csv(report)
        report["correlation_id"] = current_correlation_id()
        return Response(report)

    @extend_schema(
        parameters=[
            OpenApiParameter("report_type", str),
            OpenApiParameter("start_time", str),
            OpenApiParameter("end_time", str),
            OpenApiParameter("group_by", str),
            OpenApiParameter("currency", str),
            OpenApiParameter("format", str, enum=["json", "csv"]),
            OpenApiParameter("tag_key", str),
        ],
        responses=REPORT_RESPONSES,
        tags=["costs"],
    )
    def get(self, request: Request) -> Any:
        query = request.query_params
        return self._answer(request, query, query.getlist("tag"), strict=False)

    @extend_schema(responses=REPORT_RESPONSES, tags=["costs"])
    def post(self, request: Request) -> Any:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("Expected a JSON object")
        tag_values = body.get("tag") or []
        if isinstance(tag_values, str):
            tag_values = [tag_values]
        if not isinstance(tag_values, list):
            raise ValidationFailed("tag: must be key:value or a list of them")
        return self._answer(request, body, tag_values, strict=True)


class AllocationsView(ApiView):
    roles = {"post": CORRECT}

    @extend_schema(request=AllocationIn, tags=["costs"])
    def post(self, request: Request) -> Response:
        data = AllocationIn(data=request.data)
        data.is_valid(raise_exception=True)
        allocation, record_ids = services.create_allocation(
            tenant_id=self.tenant_id(), spec=data.validated_data, actor=self.principal.actor
        )
        return Response(
            {
                "allocation_id": allocation.allocation_id,
                "record_ids": record_ids,
                "total": allocation.total,
                "currency": allocation.currency,
                "rule": allocation.rule,
                "shares": allocation.shares,
                "amortize_from": allocation.amortize_from,
                "amortize_to": allocation.amortize_to,
                "receipt_id": allocation.receipt_id,
                "correlation_id": current_correlation_id(),
            },
            status=201,
        )


def anomaly_dict(a: Any) -> dict[str, Any]:
    return {
        "anomaly_id": a.anomaly_id,
        "dimension": a.dimension_type,
        "dimension_id": a.dimension_id,
        "time_period": a.day,
        "currency": a.currency,
        "expected_cost": a.expected_cost,
        "observed_cost": a.observed_cost,
        "deviation_percentage": a.deviation_percentage,
        "severity": a.severity,
        "consecutive_days": a.consecutive_days,
        "alerted": a.alerted,
        "detected_at": a.detected_at,
    }


class AnomaliesView(ApiView):
    roles = {"get": READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("severity", str),
            OpenApiParameter("dimension", str),
            OpenApiParameter("start_time", str),
            OpenApiParameter("end_time", str),
        ],
        tags=["costs"],
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        qs = selectors.anomalies(self.tenant_id())
        severity = query.get("severity")
        if severity:
            if severity not in ("info", "warning", "critical"):
                raise ValidationFailed(
                    "severity: must be info, warning or critical",
                    details={"severity": ["must be info, warning or critical"]},
                )
            qs = qs.filter(severity=severity)
        dimension = query.get("dimension")
        if dimension:
            qs = qs.filter(dimension_type=dimension)
        start = params.instant(query.get("start_time"), "start_time")
        end = params.instant(query.get("end_time"), "end_time")
        if start is not None:
            qs = qs.filter(day__gte=start.date())
        if end is not None:
            qs = qs.filter(day__lt=end.date())
        return Response(
            paginate(request, qs, "anomalies", lambda rows: [anomaly_dict(a) for a in rows])
        )
