"""What the client returns.

Resources (budgets, policies, quotas, alerts, ...) come back as `ApiObject`: the JSON object of
SPEC exactly (a `dict`, money as `Decimal`) with attribute access and a `meta` carrying the
status, headers, correlation id, idempotency facts and rate-limit headers. Lists come back as a
`Page`. The decisions callers branch on (checks, cost records, batches) come back as typed
dataclasses, each with the untouched JSON in `raw` and the same `meta`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")


# --- rate-limit headers ----------------------------------------------------------------------


def _sf_items(value: str) -> list[tuple[str, dict[str, str]]]:
    """A small reader for the IETF structured-field lists used by RateLimit(-Policy)."""
    items = []
    for raw_item in value.split(","):
        parts = [p.strip() for p in raw_item.split(";")]
        if not parts or not parts[0]:
            continue
        name = parts[0].strip('"')
        params: dict[str, str] = {}
        for part in parts[1:]:
            key, _, val = part.partition("=")
            params[key.strip()] = val.strip().strip('"')
        items.append((name, params))
    return items


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RateLimitInfo:
    """This API's own limit (or, on `/rate-limits/check`, the checked policy's)."""

    policy: str | None = None  # the policy name in RateLimit-Policy ("default", "cost_record")
    limit: int | None = None  # q= / X-RateLimit-Limit
    window_seconds: int | None = None  # w=
    remaining: int | None = None  # r= / X-RateLimit-Remaining
    reset_after: int | None = None  # t= (seconds until the quota is whole again)
    reset_at: int | None = None  # X-RateLimit-Reset (Unix seconds)
    retry_after: float | None = None  # Retry-After, when denied

    @classmethod
    def from_headers(cls, raw_headers: Mapping[str, str]) -> RateLimitInfo | None:
        headers = {k.lower(): v for k, v in raw_headers.items()}
        if not headers.keys() & {
            "ratelimit",
            "ratelimit-policy",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
        }:
            return None
        policy_name = None
        limit = window = remaining = reset_after = None
        if headers.get("ratelimit-policy"):
            items = _sf_items(headers["ratelimit-policy"])
            if items:
                policy_name, params = items[0]
                limit = _int(params.get("q"))
                window = _int(params.get("w"))
        if headers.get("ratelimit"):
            items = _sf_items(headers["ratelimit"])
            if items:
                name, params = items[0]
                policy_name = policy_name or name
                remaining = _int(params.get("r"))
                reset_after = _int(params.get("t"))
        if limit is None:
            limit = _int(headers.get("x-ratelimit-limit"))
        if remaining is None:
            remaining = _int(headers.get("x-ratelimit-remaining"))
        return cls(
            policy=policy_name,
            limit=limit,
            window_seconds=window,
            remaining=remaining,
            reset_after=reset_after,
            reset_at=_int(headers.get("x-ratelimit-reset")),
            retry_after=parse_retry_after(headers.get("retry-after")),
        )


@dataclass(frozen=True)
class ResponseMeta:
    status_code: int
    headers: httpx.Headers
    correlation_id: str | None
    idempotency_key: str | None
    replayed: bool  # Idempotent-Replayed: true — the first answer to this key, nothing re-ran
    rate_limit: RateLimitInfo | None
    attempts: int = 1


def empty_meta() -> ResponseMeta:
    return ResponseMeta(200, httpx.Headers(), None, None, False, None)


# --- resources and pages ---------------------------------------------------------------------


class ApiObject(dict[str, Any]):
    """A JSON object from the service, as a dict, with attribute access and `meta`."""

    meta: ResponseMeta

    def __init__(self, data: Mapping[str, Any] | None = None, meta: ResponseMeta | None = None):
        super().__init__(data or {})
        self.meta = meta or empty_meta()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Pagination:
    page: int
    page_size: int
    total_count: int | None
    total_pages: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Pagination:
        data = data or {}
        return cls(
            page=int(data.get("page") or 1),
            page_size=int(data.get("page_size") or 0),
            total_count=_int(data.get("total_count")),
            total_pages=_int(data.get("total_pages")),
        )


@dataclass
class Page(Generic[T]):
    """One page of a list: `items`, `pagination`, `next_cursor` (cursor lists), and `extra`
    for the other keys of the answer (`aggregated`, `groups`)."""

    items: list[T]
    pagination: Pagination
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    meta: ResponseMeta = field(default_factory=empty_meta)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_next(self) -> bool:
        if self.next_cursor:
            return True
        pages = self.pagination.total_pages
        return pages is not None and self.pagination.page < pages


# --- typed decisions -------------------------------------------------------------------------


def dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class BudgetCheck:
    allowed: bool
    budget_id: str | None
    remaining_budget: Decimal | None
    utilization_ratio: Decimal | None
    utilization_percent: Decimal | None
    enforcement_action: str | None
    reason: str | None
    message: str | None
    reservation_id: str | None
    reservation_expires_at: str | None
    requires_approval: bool
    approval_id: str | None
    throttle_factor: Decimal | None
    applied_budgets: list[dict[str, Any]]
    receipt_id: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meta: ResponseMeta | None = None) -> BudgetCheck:
        return cls(
            allowed=bool(data.get("allowed")),
            budget_id=_opt_str(data.get("budget_id")),
            remaining_budget=dec(data.get("remaining_budget")),
            utilization_ratio=dec(data.get("utilization_ratio")),
            utilization_percent=dec(data.get("utilization_percent")),
            enforcement_action=data.get("enforcement_action"),
            reason=data.get("reason"),
            message=data.get("message"),
            reservation_id=_opt_str(data.get("reservation_id")),
            reservation_expires_at=data.get("reservation_expires_at"),
            requires_approval=bool(data.get("requires_approval")),
            approval_id=_opt_str(data.get("approval_id")),
            throttle_factor=dec(data.get("throttle_factor")),
            applied_budgets=list(data.get("applied_budgets") or []),
            receipt_id=_opt_str(data.get("receipt_id")),
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )


@dataclass
class BudgetCheckBatch:
    allowed: bool
    results: list[BudgetCheck]
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], meta: ResponseMeta | None = None
    ) -> BudgetCheckBatch:
        return cls(
            allowed=bool(data.get("allowed")),
            results=[BudgetCheck.from_json(item) for item in data.get("results") or []],
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )


@dataclass
class RateLimitCheck:
    allowed: bool
    remaining_requests: int | None
    reset_time: str | None
    limit_value: int | None
    retry_after: int | None
    delay_seconds: Decimal | None
    policy_id: str | None
    policies: list[dict[str, Any]]
    shadow_denied: bool
    degraded: bool
    receipt_id: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meta: ResponseMeta | None = None) -> RateLimitCheck:
        return cls(
            allowed=bool(data.get("allowed")),
            remaining_requests=_int(data.get("remaining_requests")),
            reset_time=_opt_str(data.get("reset_time")),
            limit_value=_int(data.get("limit_value")),
            retry_after=_int(data.get("retry_after")),
            delay_seconds=dec(data.get("delay_seconds")),
            policy_id=_opt_str(data.get("policy_id")),
            policies=list(data.get("policies") or []),
            shadow_denied=bool(data.get("shadow_denied")),
            degraded=bool(data.get("degraded")),
            receipt_id=_opt_str(data.get("receipt_id")),
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )


@dataclass
class QuotaDecision:
    allowed: bool
    quota_id: str | None
    used_amount: Decimal | None
    remaining_amount: Decimal | None
    burst_used: Decimal | None
    utilization_ratio: Decimal | None
    warning_level: str | None
    reason: str | None
    receipt_id: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meta: ResponseMeta | None = None) -> QuotaDecision:
        return cls(
            allowed=bool(data.get("allowed")),
            quota_id=_opt_str(data.get("quota_id")),
            used_amount=dec(data.get("used_amount")),
            remaining_amount=dec(data.get("remaining_amount")),
            burst_used=dec(data.get("burst_used")),
            utilization_ratio=dec(data.get("utilization_ratio")),
            warning_level=data.get("warning_level"),
            reason=data.get("reason"),
            receipt_id=_opt_str(data.get("receipt_id")),
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )


@dataclass
class CostRecorded:
    """The 202 of `POST /cost-tracking/record`: the record is durable and its hold settled."""

    record_id: str
    recorded_at: str | None
    cost_amount: Decimal | None
    receipt_id: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meta: ResponseMeta | None = None) -> CostRecorded:
        return cls(
            record_id=str(data.get("record_id")),
            recorded_at=_opt_str(data.get("recorded_at")),
            cost_amount=dec(data.get("cost_amount")),
            receipt_id=_opt_str(data.get("receipt_id")),
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )


@dataclass
class BatchItem:
    index: int
    idempotency_key: str | None
    status: str  # created | duplicate | failed
    record_id: str | None
    error_code: str | None
    message: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchItem:
        record_id = data.get("record_id", data.get("quota_id"))
        return cls(
            index=int(data.get("index", -1)),
            idempotency_key=_opt_str(data.get("idempotency_key")),
            status=str(data.get("status")),
            record_id=_opt_str(record_id),
            error_code=data.get("error_code"),
            message=data.get("message"),
            raw=dict(data),
        )


@dataclass
class BatchResult:
    """A partial-success batch (cost records, quota allocations): per-item results in order."""

    batch_id: str | None
    processed_count: int
    duplicate_count: int
    failed_count: int
    results: list[BatchItem]
    receipt_id: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)
    meta: ResponseMeta = field(default_factory=empty_meta, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meta: ResponseMeta | None = None) -> BatchResult:
        results = [BatchItem.from_json(item) for item in data.get("results") or []]

        def count(key: str, status: str) -> int:
            value = _int(data.get(key))
            return value if value is not None else sum(1 for r in results if r.status == status)

        return cls(
            batch_id=_opt_str(data.get("batch_id")),
            processed_count=count("processed_count", "created"),
            duplicate_count=count("duplicate_count", "duplicate"),
            failed_count=count("failed_count", "failed"),
            results=results,
            receipt_id=_opt_str(data.get("receipt_id")),
            correlation_id=data.get("correlation_id"),
            raw=dict(data),
            meta=meta or empty_meta(),
        )

    @property
    def failures(self) -> list[BatchItem]:
        return [r for r in self.results if r.status == "failed"]
