"""A typed Python client for the budgeting, rate-limiting and cost observability service.

    from budgeting_client import BudgetClient

    with BudgetClient("https://budget.example.com", token=jwt) as client:
        with client.budgeted(resource_type="llm_tokens", estimated_cost="0.40") as hold:
            answer = call_the_model()
            hold.actual_cost = answer.cost

`AsyncBudgetClient` is the same client for asyncio.
"""

from budgeting_client._async.budgeted import AsyncBudgeted
from budgeting_client._async.client import AsyncBudgetClient
from budgeting_client._async.receipts import AsyncReceiptVerifier
from budgeting_client._base import RetryPolicy
from budgeting_client._sync.budgeted import Budgeted
from budgeting_client._sync.client import BudgetClient
from budgeting_client._sync.receipts import ReceiptVerifier
from budgeting_client._version import __version__
from budgeting_client.errors import (
    ApiError,
    ApprovalRequired,
    AuthenticationError,
    BudgetClientError,
    BudgetDenied,
    Conflict,
    IdempotencyKeyReused,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    UnsupportedMediaType,
    ValidationError,
)
from budgeting_client.hold import Hold, current_hold
from budgeting_client.models import (
    ApiObject,
    BatchItem,
    BatchResult,
    BudgetCheck,
    BudgetCheckBatch,
    CostRecorded,
    Page,
    Pagination,
    QuotaDecision,
    RateLimitCheck,
    RateLimitInfo,
    ResponseMeta,
)
from budgeting_client.receipts import Verification, canonical_bytes, snapshot_hash

__all__ = [
    "ApiError",
    "ApiObject",
    "ApprovalRequired",
    "AsyncBudgetClient",
    "AsyncBudgeted",
    "AsyncReceiptVerifier",
    "AuthenticationError",
    "BatchItem",
    "BatchResult",
    "BudgetCheck",
    "BudgetCheckBatch",
    "BudgetClient",
    "BudgetClientError",
    "BudgetDenied",
    "Budgeted",
    "Conflict",
    "CostRecorded",
    "Hold",
    "IdempotencyKeyReused",
    "InternalServerError",
    "MethodNotAllowed",
    "NotFound",
    "Page",
    "Pagination",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaDecision",
    "RateLimitCheck",
    "RateLimitInfo",
    "RateLimited",
    "ReceiptVerifier",
    "ResponseMeta",
    "RetryPolicy",
    "ServiceUnavailable",
    "TransportError",
    "UnsupportedMediaType",
    "ValidationError",
    "Verification",
    "__version__",
    "canonical_bytes",
    "current_hold",
    "snapshot_hash",
]
