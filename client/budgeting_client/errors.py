"""Typed exceptions.

Every answer the service gives as an error (the flat body of SPEC 1.3) becomes an `ApiError`
subclass chosen by its `error_code` (then its status), carrying `error_code`,
`correlation_id`, `status`, `details`, `retriable` and the rate-limit headers. A request that
never got an answer, after the retries, is a `TransportError`. A denied budget check inside
the `budgeted` helper is a `BudgetDenied` carrying the check response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from budgeting_client.models import BudgetCheck, RateLimitInfo


class BudgetClientError(Exception):
    """Base class of everything this package raises on purpose."""


class TransportError(BudgetClientError):
    """No answer from the service (connection refused or dropped, timeout) after the retries.

    For an unsafe method the same `idempotency_key` was sent on every attempt, so repeating the
    call with that key is safe: the service applies it at most once.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        attempts: int,
        idempotency_key: str | None,
        correlation_id: str | None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.attempts = attempts
        self.idempotency_key = idempotency_key
        self.correlation_id = correlation_id


class ApiError(BudgetClientError):
    """The service answered with an error body."""

    status: int = 0
    default_error_code: str = "API_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_code: str | None = None,
        correlation_id: str | None = None,
        details: dict[str, Any] | None = None,
        retriable: bool = False,
        headers: httpx.Headers | None = None,
        rate_limit: RateLimitInfo | None = None,
        idempotency_key: str | None = None,
        body: Any = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code or self.default_error_code
        self.correlation_id = correlation_id
        self.details = details or {}
        self.retriable = retriable
        self.headers = headers
        self.rate_limit = rate_limit
        self.idempotency_key = idempotency_key
        self.body = body
        self.attempts = attempts

    @property
    def status_code(self) -> int:
        return self.status

    def __str__(self) -> str:
        where = f" (correlation_id={self.correlation_id})" if self.correlation_id else ""
        return f"{self.status} {self.error_code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, error_code={self.error_code!r}, "
            f"message={self.message!r}, correlation_id={self.correlation_id!r})"
        )


class ValidationError(ApiError):
    default_error_code = "VALIDATION_ERROR"


class AuthenticationError(ApiError):
    default_error_code = "UNAUTHORIZED"


class PermissionDenied(ApiError):
    default_error_code = "FORBIDDEN"


class NotFound(ApiError):
    default_error_code = "NOT_FOUND"


class MethodNotAllowed(ApiError):
    default_error_code = "METHOD_NOT_ALLOWED"


class Conflict(ApiError):
    default_error_code = "CONFLICT"


class PayloadTooLarge(ApiError):
    default_error_code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    default_error_code = "UNSUPPORTED_MEDIA_TYPE"


class IdempotencyKeyReused(ApiError):
    default_error_code = "IDEMPOTENCY_KEY_REUSED"


class RateLimited(ApiError):
    default_error_code = "RATE_LIMIT_VIOLATED"

    @property
    def retry_after(self) -> float | None:
        return self.rate_limit.retry_after if self.rate_limit else None


class InternalServerError(ApiError):
    default_error_code = "INTERNAL_ERROR"


class ServiceUnavailable(ApiError):
    default_error_code = "SERVICE_UNAVAILABLE"


ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    "VALIDATION_ERROR": ValidationError,
    "UNAUTHORIZED": AuthenticationError,
    "FORBIDDEN": PermissionDenied,
    "NOT_FOUND": NotFound,
    "METHOD_NOT_ALLOWED": MethodNotAllowed,
    "CONFLICT": Conflict,
    "PAYLOAD_TOO_LARGE": PayloadTooLarge,
    "UNSUPPORTED_MEDIA_TYPE": UnsupportedMediaType,
    "IDEMPOTENCY_KEY_REUSED": IdempotencyKeyReused,
    "RATE_LIMIT_VIOLATED": RateLimited,
    "INTERNAL_ERROR": InternalServerError,
    "SERVICE_UNAVAILABLE": ServiceUnavailable,
}

ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyKeyReused,
    429: RateLimited,
    500: InternalServerError,
    503: ServiceUnavailable,
}


def error_class(status: int, error_code: str | None) -> type[ApiError]:
    if error_code and error_code in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[error_code]
    if status in ERRORS_BY_STATUS:
        return ERRORS_BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    return ApiError


class BudgetDenied(BudgetClientError):
    """A budget check inside `budgeted(...)` was denied; nothing was held or recorded.

    `check` is the full check response (`reason`, `budget_id`, `applied_budgets`, ...).
    """

    def __init__(self, check: BudgetCheck) -> None:
        self.check = check
        self.reason = check.reason
        self.budget_id = check.budget_id
        self.correlation_id = check.correlation_id
        self.requires_approval = check.requires_approval
        self.approval_id = check.approval_id
        message = check.message or check.reason or "budget check denied"
        super().__init__(f"budget check denied: {message}")


class ApprovalRequired(BudgetDenied):
    """Denied by an `escalate` budget: a pending approval (`approval_id`) was opened.

    Call again with `approval_id=...` once a financial controller approved it.
    """
