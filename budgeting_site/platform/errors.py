"""The error hierarchy and the one handler that renders every failure as SPEC 1.3's flat body.

Apps subclass `DomainError` (or one of the kinds below) in their own `exceptions.py`; views
never catch them.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from budgeting_site.platform.context import current_correlation_id

logger = logging.getLogger(__name__)


class DomainError(Exception):
    error_code = "INTERNAL_ERROR"
    status = 500
    retriable = False
    default_message = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retriable: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        if retriable is not None:
            self.retriable = retriable
        super().__init__(self.message)


class ValidationFailed(DomainError):
    error_code = "VALIDATION_ERROR"
    status = 400
    default_message = "The request is not valid"


class Unauthorized(DomainError):
    error_code = "UNAUTHORIZED"
    status = 401
    default_message = "Authentication required"


class Forbidden(DomainError):
    error_code = "FORBIDDEN"
    status = 403
    default_message = "Not allowed"


class NotFound(DomainError):
    error_code = "NOT_FOUND"
    status = 404
    default_message = "Not found"


class MethodNotAllowed(DomainError):
    error_code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "Method not allowed"


class Conflict(DomainError):
    error_code = "CONFLICT"
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(DomainError):
    error_code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "Payload too large"


class UnsupportedMediaType(DomainError):
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    default_message = "Unsupported media type"


class IdempotencyKeyReused(DomainError):
    error_code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = "This Idempotency-Key was used for a different request"


class RateLimited(DomainError):
    error_code = "RATE_LIMIT_VIOLATED"
    status = 429
    retriable = True
    default_message = "Rate limit exceeded"


class ServiceUnavailable(DomainError):
    error_code = "SERVICE_UNAVAILABLE"
    status = 503
    retriable = True
    default_message = "Service temporarily unavailable"


def error_body(
    error_code: str,
    message: str,
    details: dict[str, Any] | None = None,
    retriable: bool = False,
) -> dict[str, Any]:
    return {
        "error_code": error_code,
        "message": message,
        "correlation_id": current_correlation_id(),
        "details": details or {},
        "retriable": retriable,
    }


def error_json_response(exc: DomainError) -> JsonResponse:
    """For code outside DRF (middleware, Django views) that must answer the flat body."""
    response = JsonResponse(
        error_body(exc.error_code, exc.message, exc.details, exc.retriable), status=exc.status
    )
    for key, value in exc.headers.items():
        response[key] = value
    return response


def _validation_message(detail: Any) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, errors in detail.items():
            first = errors[0] if isinstance(errors, list) and errors else errors
            if isinstance(first, dict):
                first = _validation_message(first)
            parts.append(f"{field}: {first}")
        return "; ".join(parts) if parts else "Invalid input"
    if isinstance(detail, list) and detail:
        return str(detail[0]) if not isinstance(detail[0], dict) else _validation_message(detail[0])
    return str(detail)


def to_domain_error(exc: Exception) -> DomainError | None:
    """Map DRF's and Django's exceptions onto our kinds; None for anything unexpected."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, drf.ParseError):
        return ValidationFailed(f"Malformed request body: {exc.detail}")
    if isinstance(exc, drf.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return ValidationFailed(_validation_message(exc.detail), details=_plain(details))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return Unauthorized(str(exc.detail))
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        return Forbidden((getattr(exc, "detail", None) and str(exc.detail)) or "Not allowed")
    if isinstance(exc, drf.NotFound | Http404):
        return NotFound()
    if isinstance(exc, drf.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, drf.UnsupportedMediaType):
        return UnsupportedMediaType(str(exc.detail))
    if isinstance(exc, drf.NotAcceptable):
        return ValidationFailed(str(exc.detail))
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is over 10 MB")
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away mid-request (a restart, a terminated connection): nothing
        # was decided, and the same request may be sent again.
        return ServiceUnavailable("The database is unavailable; retry the request")
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)
        return RateLimited(headers={"Retry-After": str(max(wait, 1))})
    return None


def _plain(value: Any) -> Any:
    """ErrorDetail objects to plain strings, so details serialise the same everywhere."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = to_domain_error(exc)
    if error is None:
        logger.exception("request.unhandled_exception", exc_info=exc)
        error = DomainError("Internal error")
    response = Response(
        error_body(error.error_code, error.message, error.details, error.retriable),
        status=error.status,
    )
    for key, value in error.headers.items():
        response[key] = value
    return response
