"""What the sync and the async client share: no I/O here.

Request building (JSON with exact decimals, query strings, headers), the retry policy, and
turning an answer into a result or a typed exception.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from budgeting_client._version import __version__
from budgeting_client.errors import ApiError, error_class
from budgeting_client.models import RateLimitInfo, ResponseMeta

logger = logging.getLogger("budgeting_client")

API_PREFIX = "/budget/v1"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

# Errors that mean "no answer reached us": the request may or may not have been applied, so it
# is retried with the same Idempotency-Key (never for a request that has none).
RETRYABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter.

    Retried: connection errors and timeouts, 429 and 503 (and 502/504 from a proxy in front),
    and a 409 whose body says `retriable: true` (the same Idempotency-Key is still in flight).
    `Retry-After` is honoured; one above `max_retry_after` seconds is not waited for: the error
    is raised at once so the caller can decide.
    """

    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `retry_number` (1-based): base*2^(n-1), capped, with
        'equal jitter' (half fixed, half random) so many clients do not retry in step."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry_number - 1))
        draw: float = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2


NO_RETRIES = RetryPolicy(max_retries=0)


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url:
        raise ValueError("the service URL is empty")
    if not url.endswith(API_PREFIX):
        url += API_PREFIX
    return url + "/"


def seg(value: Any) -> str:
    """One path segment (an id), quoted so it cannot change the path."""
    text = str(value)
    if not text:
        raise ValueError("an id in a path cannot be empty")
    return quote(text, safe="")


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        # A numeric string keeps every digit; SPEC accepts money as numbers or numeric strings.
        if not obj.is_finite():
            raise ValueError(f"not a finite amount: {obj}")
        return format(obj, "f")
    if isinstance(obj, dt.datetime):
        return format_time(obj)
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} as JSON")


def encode_json(body: Any) -> bytes:
    return json.dumps(body, default=_default, separators=(",", ":"), allow_nan=False).encode()


def format_time(value: dt.datetime | dt.date | str) -> str:
    """RFC 3339 in UTC with `Z`; a naive datetime is taken to be UTC; strings pass through."""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def query(**params: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; bools as true/false, times as RFC 3339."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (dt.datetime, dt.date)):
            out[key] = format_time(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def body(extra: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
    """A JSON body without the unset fields; `extra` adds fields this client does not name."""
    out = {k: v for k, v in fields.items() if v is not None}
    if extra:
        out.update(extra)
    return out


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def build_headers(
    *,
    token: str | None,
    api_key: str | None,
    user_agent: str | None,
    extra: Mapping[str, str] | None,
) -> dict[str, str]:
    headers = {
        "Accept": "application/json",
        "User-Agent": user_agent or f"budgeting-client/{__version__}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if api_key:
        headers["X-API-Key"] = api_key
    if extra:
        headers.update(extra)
    return headers


def decode_json(response: httpx.Response, *, exact: bool = True) -> Any:
    """Numbers with a fraction become Decimal (`exact`), except where byte-exact floats matter
    (receipts are verified over their canonical JSON, which is defined on IEEE doubles)."""
    if not response.content:
        return None
    try:
        if exact:
            return json.loads(response.content, parse_float=Decimal)
        return json.loads(response.content)
    except ValueError:
        return None


def response_meta(
    response: httpx.Response, *, idempotency_key: str | None, attempts: int
) -> ResponseMeta:
    headers = response.headers
    return ResponseMeta(
        status_code=response.status_code,
        headers=headers,
        correlation_id=headers.get("x-correlation-id"),
        idempotency_key=idempotency_key,
        replayed=headers.get("idempotent-replayed", "").lower() == "true",
        rate_limit=RateLimitInfo.from_headers(headers),
        attempts=attempts,
    )


def api_error(response: httpx.Response, *, idempotency_key: str | None, attempts: int) -> ApiError:
    data = decode_json(response)
    payload = data if isinstance(data, dict) else {}
    error_code = payload.get("error_code")
    message = payload.get("message") or response.reason_phrase or f"HTTP {response.status_code}"
    cls = error_class(response.status_code, error_code)
    return cls(
        str(message),
        status=response.status_code,
        error_code=error_code,
        correlation_id=payload.get("correlation_id") or response.headers.get("x-correlation-id"),
        details=payload.get("details") if isinstance(payload.get("details"), dict) else {},
        retriable=bool(payload.get("retriable", False)),
        headers=response.headers,
        rate_limit=RateLimitInfo.from_headers(response.headers),
        idempotency_key=idempotency_key,
        body=data if data is not None else response.text,
        attempts=attempts,
    )


def retry_delay(
    policy: RetryPolicy,
    retry_number: int,
    *,
    response: httpx.Response | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retry number `retry_number`, or None: do not retry."""
    if retry_number > policy.max_retries:
        return None
    if response is not None:
        status = response.status_code
        retriable = status in policy.retry_statuses
        if status == 409:
            data = decode_json(response)
            retriable = isinstance(data, dict) and data.get("retriable") is True
        if not retriable:
            return None
        info = RateLimitInfo.from_headers(response.headers)
        if info is not None and info.retry_after is not None:
            if info.retry_after > policy.max_retry_after:
                return None
            return max(info.retry_after, 0.0)
    return policy.backoff(retry_number, rng)
