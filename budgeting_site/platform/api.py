"""The platform's own endpoints: health, metrics, and the answers for unknown URLs."""

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from budgeting_site.platform import clock, health, metrics
from budgeting_site.platform.errors import (
    DomainError,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    error_json_response,
)
from budgeting_site.platform.renderers import JSONRenderer
from budgeting_site.platform.views import ApiView

_dependency = inline_serializer(
    "DependencyStatus",
    {"status": serializers.CharField(), "latency_ms": serializers.FloatField()},
)


class HealthView(ApiView):
    roles = {"get": None}
    authentication_classes: list[Any] = []

    @extend_schema(
        auth=[],
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                {
                    "status": serializers.ChoiceField(["UP", "DEGRADED", "DOWN"]),
                    "version": serializers.CharField(),
                    "timestamp": serializers.DateTimeField(),
                    "dependencies": serializers.DictField(child=_dependency),
                    "degraded_reasons": serializers.ListField(child=serializers.CharField()),
                },
            ),
            (503, "application/json"): None,
        },
    )
    def get(self, request: Request) -> Response:
        report = health.run_checks()
        body = {
            "status": report["status"],
            "version": settings.VERSION,
            "timestamp": clock.now().isoformat().replace("+00:00", "Z"),
            "dependencies": report["dependencies"],
            "degraded_reasons": report["degraded_reasons"],
        }
        return Response(body, status=503 if report["status"] == "DOWN" else 200)


class PrometheusTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return data


class MetricsView(ApiView):
    """Prometheus text for authenticated callers, or for a scraper with METRICS_TOKEN."""

    roles = {"get": None}
    # Errors still render as JSON; scrapers that ask only for text/plain are served too.
    renderer_classes = [JSONRenderer, PrometheusTextRenderer]

    def get_authenticators(self) -> list[Any]:
        return [] if self._has_scrape_token() else super().get_authenticators()

    def _has_scrape_token(self) -> bool:
        token = settings.METRICS_TOKEN
        header = self.request.META.get("HTTP_AUTHORIZATION", "") if hasattr(self, "request") else ""
        return bool(token) and hmac.compare_digest(header, f"Bearer {token}")

    @extend_schema(responses={(200, "text/plain"): str})
    def get(self, request: Request) -> HttpResponse:
        if request.user is None and not self._has_scrape_token():
            raise Unauthorized()
        return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        self.request = request
        return super().initialize_request(request, *args, **kwargs)


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return error_json_response(NotFound(f"No such endpoint: {request.path}"))


def api_error_handler(status: int):
    """Django-level handlers: JSON under the API prefix, Django's pages elsewhere."""
    from django.views import defaults

    fallback = {
        400: defaults.bad_request,
        403: defaults.permission_denied,
        404: defaults.page_not_found,
        500: defaults.server_error,
    }[status]
    errors: dict[int, DomainError] = {
        400: DomainError("Bad request"),
        403: DomainError("Forbidden"),
        404: NotFound(),
        500: DomainError("Internal error"),
    }
    errors[400].error_code, errors[400].status = "VALIDATION_ERROR", 400
    errors[403].error_code, errors[403].status = "FORBIDDEN", 403

    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if request.path.startswith("/budget/v1/"):
            return error_json_response(errors[status])
        if status == 500:
            return fallback(request)
        return fallback(request, exception)

    return handler


__all__ = ["HealthView", "MethodNotAllowed", "MetricsView", "api_error_handler", "api_not_found"]
