"""The client, written once in async form; `_sync/client.py` is generated from this file by
`client/tools/unasync.py` (never edit the generated file by hand)."""

from __future__ import annotations

import asyncio  # sync: import time
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from budgeting_client import _base
from budgeting_client._async.budgeted import AsyncBudgeted
from budgeting_client._async.receipts import AsyncReceiptVerifier
from budgeting_client._base import body, query, seg
from budgeting_client.errors import TransportError
from budgeting_client.models import (
    ApiObject,
    BatchResult,
    BudgetCheck,
    BudgetCheckBatch,
    CostRecorded,
    Page,
    Pagination,
    QuotaDecision,
    RateLimitCheck,
    ResponseMeta,
)
from budgeting_client.receipts import Verification

T = TypeVar("T")
Money = Decimal | int | str
Time = datetime | date | str
Json = dict[str, Any]


class AsyncBudgetClient:
    """A client for every endpoint of the service (SPEC.md), over httpx.

    `base_url` is the service root (`https://budget.example.com`) or the API root
    (`.../budget/v1`). Authenticate with `token` (a JWT, sent as Bearer) or `api_key`
    (`X-API-Key`). Every POST/PUT/PATCH/DELETE carries an `Idempotency-Key` (generated once per
    call unless you pass `idempotency_key=`), and every retry of that call reuses it, so a
    retried request is applied at most once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = _base.DEFAULT_TIMEOUT,
        retry: _base.RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = _base.normalize_base_url(base_url)
        self.retry = retry or _base.RetryPolicy()
        self._sleep = sleep or asyncio.sleep  # sync: self._sleep = sleep or time.sleep
        self._rng = rng
        self._headers = _base.build_headers(
            token=token, api_key=api_key, user_agent=user_agent, extra=headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._verifier: AsyncReceiptVerifier | None = None

    # --- plumbing ------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncBudgetClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        exact_numbers: bool = True,
        raise_for_status: bool = True,
        accept_decision_429: bool = False,
        read_only: bool = False,
        retry: _base.RetryPolicy | None = None,
    ) -> tuple[Any, ResponseMeta]:
        """Send one logical call (with its retries) and return (decoded body, meta).

        Unsafe methods get one Idempotency-Key for all attempts (`read_only`: a POST that only
        reads, such as a report, needs none). A call that still has no
        answer after the retries raises `TransportError`; an error answer raises the
        `ApiError` subclass of its `error_code`.
        """
        method = method.upper()
        url = self.base_url + path.lstrip("/")
        send_headers = (
            dict(self._headers)
            if authenticate
            else {k: v for k, v in self._headers.items() if k not in ("Authorization", "X-API-Key")}
        )
        if headers:
            send_headers.update(headers)
        # One correlation id for every attempt of the call, so the service's logs tie them up.
        correlation_id = correlation_id or _base.new_idempotency_key()
        send_headers["X-Correlation-ID"] = correlation_id
        policy = retry or self.retry
        if method in _base.UNSAFE_METHODS and not (read_only and idempotency_key is None):
            idempotency_key = idempotency_key or _base.new_idempotency_key()
            send_headers["Idempotency-Key"] = idempotency_key
        else:
            idempotency_key = None
        content = None
        if json is not None:
            content = _base.encode_json(json)
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method, url, params=params, content=content, headers=send_headers
                )
            except httpx.TransportError as exc:
                delay = None
                if isinstance(exc, _base.RETRYABLE_EXCEPTIONS):
                    delay = _base.retry_delay(policy, attempt, rng=self._rng)
                if delay is None:
                    raise TransportError(
                        f"{method} {url}: no answer after {attempt} attempt(s): {exc!r}",
                        method=method,
                        url=url,
                        attempts=attempt,
                        idempotency_key=idempotency_key,
                        correlation_id=correlation_id,
                    ) from exc
                _base.logger.info(
                    "budgeting_client.retry",
                    extra={"method": method, "url": url, "attempt": attempt, "error": repr(exc)},
                )
                await self._sleep(delay)
                continue
            if response.status_code >= 400:
                await response.aread()
                if accept_decision_429 and response.status_code == 429:
                    data = _base.decode_json(response, exact=exact_numbers)
                    if isinstance(data, dict) and "allowed" in data:
                        # RATELIMIT_DENY_STATUS=429: a denial is a decision, not an error.
                        return data, _base.response_meta(
                            response, idempotency_key=idempotency_key, attempts=attempt
                        )
                delay = _base.retry_delay(policy, attempt, response=response, rng=self._rng)
                if delay is not None:
                    _base.logger.info(
                        "budgeting_client.retry",
                        extra={
                            "method": method,
                            "url": url,
                            "attempt": attempt,
                            "status": response.status_code,
                        },
                    )
                    await self._sleep(delay)
                    continue
                if raise_for_status:
                    raise _base.api_error(
                        response, idempotency_key=idempotency_key, attempts=attempt
                    )
            meta = _base.response_meta(response, idempotency_key=idempotency_key, attempts=attempt)
            content_type = response.headers.get("content-type", "")
            if "json" in content_type:
                return _base.decode_json(response, exact=exact_numbers), meta
            return response.text, meta

    async def _object(self, method: str, path: str, **kwargs: Any) -> ApiObject:
        data, meta = await self.request(method, path, **kwargs)
        return ApiObject(data if isinstance(data, dict) else {}, meta)

    async def _page(
        self, path: str, items_key: str, params: Mapping[str, Any], **kwargs: Any
    ) -> Page[ApiObject]:
        data, meta = await self.request("GET", path, params=params, **kwargs)
        data = data if isinstance(data, dict) else {}
        items = [ApiObject(item, meta) for item in data.get(items_key) or []]
        extra = {k: v for k, v in data.items() if k not in (items_key, "pagination", "next_cursor")}
        return Page(
            items=items,
            pagination=Pagination.from_json(data.get("pagination")),
            next_cursor=data.get("next_cursor"),
            extra=extra,
            meta=meta,
        )

    async def _iterate(
        self, path: str, items_key: str, params: Mapping[str, Any], *, cursor: bool = False
    ) -> AsyncIterator[ApiObject]:
        """Every item of a list, page after page (by `cursor` where the list has one)."""
        params = dict(params)
        params.setdefault("page_size", "1000")
        page_number = int(params.pop("page", 1))
        if cursor:
            params.setdefault("cursor", "")  # an empty cursor asks for the first page
        while True:
            if not cursor:
                params["page"] = str(page_number)
            page = await self._page(path, items_key, params)
            for item in page.items:  # sync: yield from page.items
                yield item  # sync-drop
            if cursor and page.next_cursor:
                params["cursor"] = page.next_cursor
                continue
            if cursor or not page.has_next or not page.items:
                return
            page_number += 1

    # --- health and metrics ------------------------------------------------------------------

    async def health(self) -> ApiObject:
        """`GET /health` (no auth). A DOWN service answers 503 with the same body: returned,
        not raised, with `meta.status_code` 503."""
        data, meta = await self.request(
            "GET", "health", authenticate=False, raise_for_status=False, retry=_base.NO_RETRIES
        )
        return ApiObject(data if isinstance(data, dict) else {}, meta)

    async def metrics(self) -> str:
        data, _ = await self.request("GET", "metrics", headers={"Accept": "text/plain, */*;q=0.1"})
        return str(data)

    # --- budgets -------------------------------------------------------------------------------

    async def create_budget(
        self,
        *,
        budget_name: str,
        budget_amount: Money,
        period_type: str,
        start_date: Time,
        allocated_to_type: str,
        allocated_to_id: str,
        enforcement_action: str,
        currency: str | None = None,
        budget_type: str | None = None,
        end_date: Time | None = None,
        thresholds: Mapping[str, bool] | None = None,
        notifications: Mapping[str, Any] | None = None,
        approval_timeout_hours: int | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        payload = body(
            extra,
            tenant_id=tenant_id,
            budget_name=budget_name,
            budget_type=budget_type,
            budget_amount=budget_amount,
            currency=currency,
            period_type=period_type,
            start_date=_base.format_time(start_date),
            end_date=_base.format_time(end_date) if end_date is not None else None,
            allocated_to_type=allocated_to_type,
            allocated_to_id=allocated_to_id,
            enforcement_action=enforcement_action,
            thresholds=thresholds,
            notifications=notifications,
            approval_timeout_hours=approval_timeout_hours,
        )
        return await self._object(
            "POST",
            "budgets",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_budgets(
        self,
        *,
        budget_type: str | None = None,
        allocated_to_type: str | None = None,
        allocated_to_id: str | None = None,
        active_only: bool | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page[ApiObject]:
        params = query(
            budget_type=budget_type,
            allocated_to_type=allocated_to_type,
            allocated_to_id=allocated_to_id,
            active_only=active_only,
            page=page,
            page_size=page_size,
        )
        return await self._page("budgets", "budgets", params)

    def iter_budgets(self, **filters: Any) -> AsyncIterator[ApiObject]:
        return self._iterate("budgets", "budgets", query(**filters))

    async def get_budget(self, budget_id: str) -> ApiObject:
        return await self._object("GET", f"budgets/{seg(budget_id)}")

    async def update_budget(
        self,
        budget_id: str,
        definition: Mapping[str, Any],
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`PUT /budgets/{id}`: replaces the definition. `version` (or the one inside
        `definition`) is the precondition: a stale one raises `Conflict`."""
        payload = dict(definition)
        if version is not None:
            payload["version"] = version
        return await self._object(
            "PUT",
            f"budgets/{seg(budget_id)}",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def delete_budget(
        self,
        budget_id: str,
        *,
        force: bool = False,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await self.request(
            "DELETE",
            f"budgets/{seg(budget_id)}",
            params=query(force=True) if force else None,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def get_budget_utilization(
        self, budget_id: str, *, page: int | None = None, page_size: int | None = None
    ) -> Page[ApiObject]:
        return await self._page(
            f"budgets/{seg(budget_id)}/utilization",
            "utilization",
            query(page=page, page_size=page_size),
        )

    async def check_budget(
        self,
        *,
        resource_type: str,
        estimated_cost: Money,
        currency: str | None = None,
        allocated_to_type: str | None = None,
        allocated_to_id: str | None = None,
        operation_context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        dry_run: bool | None = None,
        hold_ttl_seconds: int | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> BudgetCheck:
        """`POST /budgets/check`. A decision is a 200 either way: look at `allowed`."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            estimated_cost=estimated_cost,
            currency=currency,
            allocated_to_type=allocated_to_type,
            allocated_to_id=allocated_to_id,
            operation_context=operation_context,
            approval_id=approval_id,
            dry_run=dry_run,
            hold_ttl_seconds=hold_ttl_seconds,
        )
        data, meta = await self.request(
            "POST",
            "budgets/check",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return BudgetCheck.from_json(data or {}, meta)

    async def check_budget_batch(
        self,
        checks: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> BudgetCheckBatch:
        """`POST /budgets/check/batch`: all held or none (1..500 checks)."""
        data, meta = await self.request(
            "POST",
            "budgets/check/batch",
            json={"checks": [dict(c) for c in checks]},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return BudgetCheckBatch.from_json(data or {}, meta)

    async def get_reservation(self, reservation_id: str) -> ApiObject:
        """`GET /budgets/reservations/{id}`: a hold and its state."""
        return await self._object("GET", f"budgets/reservations/{seg(reservation_id)}")

    async def commit_reservation(
        self,
        reservation_id: str,
        *,
        actual_cost: Money | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"budgets/reservations/{seg(reservation_id)}/commit",
            json=body(actual_cost=actual_cost),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def release_reservation(
        self,
        reservation_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"budgets/reservations/{seg(reservation_id)}/release",
            json={},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def extend_reservation(
        self,
        reservation_id: str,
        *,
        hold_ttl_seconds: int,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"budgets/reservations/{seg(reservation_id)}/extend",
            json={"hold_ttl_seconds": hold_ttl_seconds},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    def budgeted(
        self,
        *,
        resource_type: str,
        estimated_cost: Money | Callable[..., Money],
        currency: str | None = None,
        allocated_to_type: str | None = None,
        allocated_to_id: str | None = None,
        operation_context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        hold_ttl_seconds: int | None = None,
        service_name: str | None = None,
        resource_id: str | None = None,
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        usage_unit: str | None = None,
        cost_from_result: Callable[[Any], Money | None] | None = None,
        tenant_id: str | None = None,
    ) -> AsyncBudgeted:
        """Check → run → record, or release on failure.

        As a context manager: `async with client.budgeted(...) as hold: ...;
        hold.actual_cost = x`. As a decorator: `@client.budgeted(..., cost_from_result=f)`.
        A denied check raises `BudgetDenied` (or `ApprovalRequired`) before the work runs.
        """
        return AsyncBudgeted(
            self,
            resource_type=resource_type,
            estimated_cost=estimated_cost,
            currency=currency,
            allocated_to_type=allocated_to_type,
            allocated_to_id=allocated_to_id,
            operation_context=operation_context,
            approval_id=approval_id,
            hold_ttl_seconds=hold_ttl_seconds,
            service_name=service_name,
            resource_id=resource_id,
            region=region,
            tags=tags,
            usage_unit=usage_unit,
            cost_from_result=cost_from_result,
            tenant_id=tenant_id,
        )

    # --- approvals -----------------------------------------------------------------------------

    async def list_approvals(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page[ApiObject]:
        params = query(status=status, kind=kind, page=page, page_size=page_size)
        return await self._page("approvals", "approvals", params)

    async def get_approval(self, approval_id: str) -> ApiObject:
        return await self._object("GET", f"approvals/{seg(approval_id)}")

    async def approve(
        self,
        approval_id: str,
        *,
        comment: str | None = None,
        approved_amount: Money | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"approvals/{seg(approval_id)}/approve",
            json=body(comment=comment, approved_amount=approved_amount),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def reject(
        self,
        approval_id: str,
        *,
        comment: str | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"approvals/{seg(approval_id)}/reject",
            json=body(comment=comment),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    # --- rate limits ---------------------------------------------------------------------------

    async def create_rate_limit_policy(
        self,
        *,
        resource_type: str,
        limit_value: int,
        time_window_seconds: int,
        scope_type: str | None = None,
        scope_id: str | None = None,
        algorithm: str | None = None,
        burst_capacity: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        mode: str | None = None,
        fail_mode: str | None = None,
        enabled: bool | None = None,
        policy_name: str | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        payload = body(
            extra,
            tenant_id=tenant_id,
            policy_name=policy_name,
            scope_type=scope_type,
            scope_id=scope_id,
            resource_type=resource_type,
            limit_value=limit_value,
            time_window_seconds=time_window_seconds,
            algorithm=algorithm,
            burst_capacity=burst_capacity,
            overrides=overrides,
            mode=mode,
            fail_mode=fail_mode,
            enabled=enabled,
        )
        return await self._object(
            "POST",
            "rate-limits",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_rate_limit_policies(
        self,
        *,
        scope_type: str | None = None,
        scope_id: str | None = None,
        resource_type: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page[ApiObject]:
        params = query(
            scope_type=scope_type,
            scope_id=scope_id,
            resource_type=resource_type,
            page=page,
            page_size=page_size,
        )
        return await self._page("rate-limits", "policies", params)

    def iter_rate_limit_policies(self, **filters: Any) -> AsyncIterator[ApiObject]:
        return self._iterate("rate-limits", "policies", query(**filters))

    async def get_rate_limit_policy(self, policy_id: str) -> ApiObject:
        return await self._object("GET", f"rate-limits/{seg(policy_id)}")

    async def update_rate_limit_policy(
        self,
        policy_id: str,
        definition: Mapping[str, Any],
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        payload = dict(definition)
        if version is not None:
            payload["version"] = version
        return await self._object(
            "PUT",
            f"rate-limits/{seg(policy_id)}",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def delete_rate_limit_policy(
        self,
        policy_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await self.request(
            "DELETE",
            f"rate-limits/{seg(policy_id)}",
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def check_rate_limit(
        self,
        *,
        resource_type: str,
        request_count: int | None = None,
        priority: str | None = None,
        resource_key: str | None = None,
        scope_type: str | None = None,
        scope_id: str | None = None,
        scopes: Mapping[str, str] | None = None,
        dry_run: bool | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> RateLimitCheck:
        """`POST /rate-limits/check`. A denial is a result (`allowed` false), also when the
        service answers it with 429 (`RATELIMIT_DENY_STATUS=429`): such a 429 is not retried.
        `meta.rate_limit` describes the checked policy."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            request_count=request_count,
            priority=priority,
            resource_key=resource_key,
            scope_type=scope_type,
            scope_id=scope_id,
            scopes=scopes,
            dry_run=dry_run,
        )
        data, meta = await self.request(
            "POST",
            "rate-limits/check",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            accept_decision_429=True,
        )
        return RateLimitCheck.from_json(data or {}, meta)

    async def grant_emergency_capacity(
        self,
        policy_id: str,
        *,
        extra_requests: int,
        duration_seconds: int,
        reason: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"rate-limits/{seg(policy_id)}/emergency-capacity",
            json={
                "extra_requests": extra_requests,
                "duration_seconds": duration_seconds,
                "reason": reason,
            },
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    # --- costs ---------------------------------------------------------------------------------

    async def record_cost(
        self,
        *,
        resource_type: str,
        cost_amount: Money | None = None,
        currency: str | None = None,
        usage_quantity: Money | None = None,
        usage_unit: str | None = None,
        resource_id: str | None = None,
        service_name: str | None = None,
        attributed_to_type: str | None = None,
        attributed_to_id: str | None = None,
        operation_context: Mapping[str, Any] | None = None,
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        timestamp: Time | None = None,
        reservation_id: str | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CostRecorded:
        """`POST /cost-tracking/record` → 202: durable, its hold settled, its budgets charged."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            cost_amount=cost_amount,
            currency=currency,
            usage_quantity=usage_quantity,
            usage_unit=usage_unit,
            resource_id=resource_id,
            service_name=service_name,
            attributed_to_type=attributed_to_type,
            attributed_to_id=attributed_to_id,
            operation_context=operation_context,
            region=region,
            tags=tags,
            timestamp=_base.format_time(timestamp) if timestamp is not None else None,
            reservation_id=reservation_id,
        )
        data, meta = await self.request(
            "POST",
            "cost-tracking/record",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return CostRecorded.from_json(data or {}, meta)

    async def record_costs_batch(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> BatchResult:
        """`POST /cost-tracking/record/batch` (1..1000 records, each with its own
        `idempotency_key`, so a repeated item comes back as `duplicate`)."""
        data, meta = await self.request(
            "POST",
            "cost-tracking/record/batch",
            json={"records": [dict(r) for r in records]},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return BatchResult.from_json(data or {}, meta)

    async def reverse_cost(
        self,
        record_id: str,
        *,
        reason: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"cost-tracking/{seg(record_id)}/reverse",
            json={"reason": reason},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_cost_records(
        self,
        *,
        start_time: Time | None = None,
        end_time: Time | None = None,
        resource_type: str | None = None,
        attributed_to_type: str | None = None,
        attributed_to_id: str | None = None,
        service_name: str | None = None,
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        group_by: str | Sequence[str] | None = None,
        currency: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> Page[ApiObject]:
        """One page of `GET /cost-tracking/records`; `extra["aggregated"]` covers every match."""
        params = _cost_filters(
            start_time=start_time,
            end_time=end_time,
            resource_type=resource_type,
            attributed_to_type=attributed_to_type,
            attributed_to_id=attributed_to_id,
            service_name=service_name,
            region=region,
            tags=tags,
            group_by=group_by,
            currency=currency,
        )
        params.update(query(page=page, page_size=page_size, cursor=cursor))
        return await self._page("cost-tracking/records", "records", params)

    def iter_cost_records(self, **filters: Any) -> AsyncIterator[ApiObject]:
        """Every matching cost record, paged by cursor."""
        return self._iterate(
            "cost-tracking/records", "records", _cost_filters(**filters), cursor=True
        )

    async def get_cost_record(self, record_id: str) -> ApiObject:
        return await self._object("GET", f"cost-tracking/{seg(record_id)}")

    async def cost_report(
        self,
        *,
        report_type: str = "summary",
        start_time: Time | None = None,
        end_time: Time | None = None,
        group_by: Sequence[str] | None = None,
        currency: str | None = None,
        tag_key: str | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`POST /cost-tracking/reports` as JSON (`breakdown` adds up to `total_cost`)."""
        payload = _report_body(
            extra,
            tenant_id=tenant_id,
            report_type=report_type,
            start_time=start_time,
            end_time=end_time,
            group_by=group_by,
            currency=currency,
            tag_key=tag_key,
        )
        return await self._object(
            "POST",
            "cost-tracking/reports",
            json=payload,
            correlation_id=correlation_id,
            read_only=True,
        )

    async def cost_report_csv(
        self,
        *,
        report_type: str = "summary",
        start_time: Time | None = None,
        end_time: Time | None = None,
        group_by: Sequence[str] | None = None,
        currency: str | None = None,
        tag_key: str | None = None,
        tenant_id: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """The same report as CSV text (`format=csv`)."""
        payload = _report_body(
            None,
            tenant_id=tenant_id,
            report_type=report_type,
            start_time=start_time,
            end_time=end_time,
            group_by=group_by,
            currency=currency,
            tag_key=tag_key,
        )
        payload["format"] = "csv"
        data, _ = await self.request(
            "POST",
            "cost-tracking/reports",
            json=payload,
            headers={"Accept": "text/csv"},
            correlation_id=correlation_id,
            read_only=True,
        )
        return data if isinstance(data, str) else ""

    async def create_allocation(
        self,
        *,
        targets: Sequence[Mapping[str, Any]],
        rule: str,
        cost_amount: Money | None = None,
        resource_type: str | None = None,
        service_name: str | None = None,
        currency: str | None = None,
        source_filter: Mapping[str, Any] | None = None,
        usage_resource_type: str | None = None,
        amortize_from: Time | None = None,
        amortize_to: Time | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`POST /cost-tracking/allocations` → `{allocation_id, record_ids, total}`."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            cost_amount=cost_amount,
            resource_type=resource_type,
            service_name=service_name,
            currency=currency,
            source_filter=source_filter,
            targets=[dict(t) for t in targets],
            rule=rule,
            usage_resource_type=usage_resource_type,
            amortize_from=_time_or_none(amortize_from),
            amortize_to=_time_or_none(amortize_to),
        )
        return await self._object(
            "POST",
            "cost-tracking/allocations",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_anomalies(
        self,
        *,
        severity: str | None = None,
        dimension: str | None = None,
        start_time: Time | None = None,
        end_time: Time | None = None,
        page: int | None = None,
        page_size: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> Page[ApiObject]:
        params = query(
            severity=severity,
            dimension=dimension,
            start_time=start_time,
            end_time=end_time,
            page=page,
            page_size=page_size,
            **dict(filters or {}),
        )
        return await self._page("cost-tracking/anomalies", "anomalies", params)

    # --- quotas --------------------------------------------------------------------------------

    async def allocate_quota(
        self,
        *,
        resource_type: str,
        allocated_amount: Money | None = None,
        period_start: Time | None = None,
        period_end: Time | None = None,
        allocation_type: str | None = None,
        allocated_to_id: str | None = None,
        max_burst_amount: Money | None = None,
        auto_renew: bool | None = None,
        renewal_strategy: str | None = None,
        strategy: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`POST /quotas/allocate` → 201 `{quota_id, allocated_at, allocated_amount, ...}`."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            allocated_amount=allocated_amount,
            max_burst_amount=max_burst_amount,
            period_start=_time_or_none(period_start),
            period_end=_time_or_none(period_end),
            auto_renew=auto_renew,
            renewal_strategy=renewal_strategy,
            strategy=strategy,
        )
        return await self._object(
            "POST",
            "quotas/allocate",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def allocate_quotas_batch(
        self,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> BatchResult:
        """`POST /quotas/allocate/batch`: `{"allocations": [...]}` (partial success) or a pool
        split `{"resource_type", "pool_amount", "strategy", "period_start", "period_end",
        "entities": [...]}`."""
        data, meta = await self.request(
            "POST",
            "quotas/allocate/batch",
            json=dict(payload),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return BatchResult.from_json(data or {}, meta)

    async def list_quotas(
        self,
        *,
        resource_type: str | None = None,
        allocation_type: str | None = None,
        allocated_to_id: str | None = None,
        active_only: bool | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page[ApiObject]:
        params = query(
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            active_only=active_only,
            page=page,
            page_size=page_size,
        )
        return await self._page("quotas", "quotas", params)

    def iter_quotas(self, **filters: Any) -> AsyncIterator[ApiObject]:
        return self._iterate("quotas", "quotas", query(**filters))

    async def get_quota(self, quota_id: str) -> ApiObject:
        return await self._object("GET", f"quotas/{seg(quota_id)}")

    async def update_quota(
        self,
        quota_id: str,
        *,
        allocated_amount: Money | None = None,
        max_burst_amount: Money | None = None,
        auto_renew: bool | None = None,
        period_end: Time | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`PATCH /quotas/{id}` (partial)."""
        payload = body(
            allocated_amount=allocated_amount,
            max_burst_amount=max_burst_amount,
            auto_renew=auto_renew,
            period_end=_time_or_none(period_end),
            version=version,
        )
        return await self._object(
            "PATCH",
            f"quotas/{seg(quota_id)}",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def delete_quota(
        self,
        quota_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await self.request(
            "DELETE",
            f"quotas/{seg(quota_id)}",
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def consume_quota(
        self,
        *,
        resource_type: str,
        amount: Money,
        allocation_type: str | None = None,
        allocated_to_id: str | None = None,
        operation_type: str | None = None,
        resource_id: str | None = None,
        dry_run: bool | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> QuotaDecision:
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            amount=amount,
            operation_type=operation_type,
            resource_id=resource_id,
            dry_run=dry_run,
        )
        data, meta = await self.request(
            "POST",
            "quotas/consume",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return QuotaDecision.from_json(data or {}, meta)

    async def check_quota(
        self,
        *,
        resource_type: str,
        amount: Money,
        allocation_type: str | None = None,
        allocated_to_id: str | None = None,
        operation_type: str | None = None,
        resource_id: str | None = None,
        tenant_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> QuotaDecision:
        """`POST /quotas/check`: the same decision as `consume_quota`, consuming nothing."""
        payload = body(
            extra,
            tenant_id=tenant_id,
            resource_type=resource_type,
            allocation_type=allocation_type,
            allocated_to_id=allocated_to_id,
            amount=amount,
            operation_type=operation_type,
            resource_id=resource_id,
        )
        data, meta = await self.request(
            "POST", "quotas/check", json=payload, correlation_id=correlation_id, read_only=True
        )
        return QuotaDecision.from_json(data or {}, meta)

    # --- receipts ------------------------------------------------------------------------------

    async def list_receipts(
        self,
        *,
        gate_id: str | None = None,
        decision: str | None = None,
        start_time: Time | None = None,
        end_time: Time | None = None,
        page: int | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> Page[ApiObject]:
        """Receipts keep their numbers as JSON floats/ints (not Decimal) so that their
        canonical form, and so their signature, can be checked byte for byte."""
        params = query(
            gate_id=gate_id,
            decision=decision,
            start_time=start_time,
            end_time=end_time,
            page=page,
            page_size=page_size,
            cursor=cursor,
        )
        data, meta = await self.request("GET", "receipts", params=params, exact_numbers=False)
        data = data if isinstance(data, dict) else {}
        return Page(
            items=[ApiObject(item, meta) for item in data.get("receipts") or []],
            pagination=Pagination.from_json(data.get("pagination")),
            next_cursor=data.get("next_cursor"),
            extra={
                k: v for k, v in data.items() if k not in ("receipts", "pagination", "next_cursor")
            },
            meta=meta,
        )

    async def iter_receipts(
        self,
        *,
        gate_id: str | None = None,
        decision: str | None = None,
        start_time: Time | None = None,
        end_time: Time | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[ApiObject]:
        """Every matching receipt, paged by cursor (an empty cursor asks for the first page)."""
        cursor = ""
        while True:
            page = await self.list_receipts(
                gate_id=gate_id,
                decision=decision,
                start_time=start_time,
                end_time=end_time,
                page_size=page_size,
                cursor=cursor,
            )
            for item in page.items:  # sync: yield from page.items
                yield item  # sync-drop
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def get_receipt(self, receipt_id: str) -> ApiObject:
        """`GET /receipts/{id}`: exactly the signed object."""
        return await self._object("GET", f"receipts/{seg(receipt_id)}", exact_numbers=False)

    async def get_receipt_keys(self) -> ApiObject:
        """`GET /receipts/keys` (public): `{"keys": [JWK OKP Ed25519 ...]}`."""
        return await self._object("GET", "receipts/keys", authenticate=False)

    async def verify_receipt_remote(self, receipt: Mapping[str, Any]) -> ApiObject:
        """`POST /receipts/verify`: the service's own verdict `{valid, reason}`."""
        return await self._object(
            "POST", "receipts/verify", json=dict(receipt), read_only=True, exact_numbers=False
        )

    @property
    def receipt_verifier(self) -> AsyncReceiptVerifier:
        """An offline verifier over this service's published keys (fetched once, cached,
        fetched again when a receipt names an unknown `kid`)."""
        if self._verifier is None:
            self._verifier = AsyncReceiptVerifier(fetch_keys=self._fetch_keys)
        return self._verifier

    async def _fetch_keys(self) -> Mapping[str, Any]:
        return await self.get_receipt_keys()

    async def verify_receipt(self, receipt: Mapping[str, Any]) -> Verification:
        """Verify a receipt offline (signature and snapshot hash) with the published keys."""
        return await self.receipt_verifier.verify(receipt)

    # --- events, subscriptions, alerts ---------------------------------------------------------

    async def create_subscription(
        self,
        *,
        event_types: Sequence[str],
        webhook_url: str,
        filters: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`POST /event-subscriptions`; the answer's `signing_secret` is shown only here."""
        payload = body(
            tenant_id=tenant_id,
            event_types=list(event_types),
            webhook_url=webhook_url,
            filters=filters,
            enabled=enabled,
        )
        return await self._object(
            "POST",
            "event-subscriptions",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_subscriptions(
        self, *, page: int | None = None, page_size: int | None = None
    ) -> Page[ApiObject]:
        return await self._page(
            "event-subscriptions", "subscriptions", query(page=page, page_size=page_size)
        )

    async def get_subscription(self, subscription_id: str) -> ApiObject:
        return await self._object("GET", f"event-subscriptions/{seg(subscription_id)}")

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        event_types: Sequence[str] | None = None,
        webhook_url: str | None = None,
        filters: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        """`PUT /event-subscriptions/{id}` (partial: only the fields given change)."""
        payload = body(
            event_types=list(event_types) if event_types is not None else None,
            webhook_url=webhook_url,
            filters=filters,
            enabled=enabled,
        )
        return await self._object(
            "PUT",
            f"event-subscriptions/{seg(subscription_id)}",
            json=payload,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def delete_subscription(
        self,
        subscription_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await self.request(
            "DELETE",
            f"event-subscriptions/{seg(subscription_id)}",
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def list_deliveries(
        self, subscription_id: str, *, page: int | None = None, page_size: int | None = None
    ) -> Page[ApiObject]:
        return await self._page(
            f"event-subscriptions/{seg(subscription_id)}/deliveries",
            "deliveries",
            query(page=page, page_size=page_size),
        )

    async def list_alerts(
        self,
        *,
        alert_type: str | None = None,
        severity: str | None = None,
        status: str | None = None,
        start_time: Time | None = None,
        end_time: Time | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page[ApiObject]:
        params = query(
            alert_type=alert_type,
            severity=severity,
            status=status,
            start_time=start_time,
            end_time=end_time,
            page=page,
            page_size=page_size,
        )
        return await self._page("alerts", "alerts", params)

    def iter_alerts(self, **filters: Any) -> AsyncIterator[ApiObject]:
        return self._iterate("alerts", "alerts", query(**filters))

    async def get_alert(self, alert_id: str) -> ApiObject:
        return await self._object("GET", f"alerts/{seg(alert_id)}")

    async def acknowledge_alert(
        self,
        alert_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"alerts/{seg(alert_id)}/acknowledge",
            json={},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )

    async def resolve_alert(
        self,
        alert_id: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> ApiObject:
        return await self._object(
            "POST",
            f"alerts/{seg(alert_id)}/resolve",
            json={},
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )


def _time_or_none(value: Time | None) -> str | None:
    return None if value is None else _base.format_time(value)


def _cost_filters(
    *,
    start_time: Time | None = None,
    end_time: Time | None = None,
    resource_type: str | None = None,
    attributed_to_type: str | None = None,
    attributed_to_id: str | None = None,
    service_name: str | None = None,
    region: str | None = None,
    tags: Mapping[str, str] | None = None,
    group_by: str | Sequence[str] | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    if group_by is not None and not isinstance(group_by, str):
        group_by = ",".join(group_by)
    params = query(
        start_time=start_time,
        end_time=end_time,
        resource_type=resource_type,
        attributed_to_type=attributed_to_type,
        attributed_to_id=attributed_to_id,
        service_name=service_name,
        region=region,
        group_by=group_by,
        currency=currency,
    )
    if tags:
        params["tag"] = [f"{k}:{v}" for k, v in tags.items()]
    return params


def _report_body(
    extra: Mapping[str, Any] | None,
    *,
    tenant_id: str | None,
    report_type: str,
    start_time: Time | None,
    end_time: Time | None,
    group_by: Sequence[str] | None,
    currency: str | None,
    tag_key: str | None,
) -> Json:
    return body(
        extra,
        tenant_id=tenant_id,
        report_type=report_type,
        start_time=_time_or_none(start_time),
        end_time=_time_or_none(end_time),
        group_by=list(group_by) if group_by is not None else None,
        currency=currency,
        tag_key=tag_key,
    )
