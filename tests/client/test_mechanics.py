"""Pure client mechanics against httpx.MockTransport: retries and backoff, Idempotency-Key
reuse, error mapping, headers, money encoding. Behaviour against the real service is in
test_live.py."""

import asyncio
import json
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from budgeting_client import (
    AsyncBudgetClient,
    BudgetClient,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from budgeting_client._base import normalize_base_url, retry_delay
from budgeting_client.errors import AuthenticationError, InternalServerError
from budgeting_client.models import RateLimitInfo

ROOT = Path(__file__).resolve().parents[2]


def error(status, code, message="nope", retriable=False, headers=None, details=None):
    return httpx.Response(
        status,
        json={
            "error_code": code,
            "message": message,
            "correlation_id": "corr-1",
            "details": details or {},
            "retriable": retriable,
        },
        headers=headers or {},
    )


RECORDED = {
    "record_id": "0b6f2b8e-9d0f-4a55-9a52-5c5b8a3d2a11",
    "recorded_at": "2025-01-01T00:00:00Z",
    "cost_amount": 1.25,
    "receipt_id": "r-1",
    "correlation_id": "corr-1",
}


class Script:
    """A MockTransport handler that answers from a list and remembers every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def keys(self):
        return [r.headers.get("Idempotency-Key") for r in self.requests]


def make_client(script, **kwargs):
    sleeps: list[float] = []
    client = BudgetClient(
        "http://budget.test",
        token="tok",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        rng=random.Random(7),
        **kwargs,
    )
    return client, sleeps


def record(client, **kwargs):
    return client.record_cost(resource_type="gpu", cost_amount=Decimal("1.25"), **kwargs)


def test_connection_errors_are_retried_with_the_same_idempotency_key():
    script = Script(
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(202, json=RECORDED, headers={"Idempotent-Replayed": "true"}),
    )
    client, sleeps = make_client(script)

    result = record(client)

    assert len(script.requests) == 3
    assert len(set(script.keys)) == 1 and script.keys[0]
    assert [r.content for r in script.requests] == [script.requests[0].content] * 3
    assert result.meta.attempts == 3
    assert result.meta.replayed is True
    assert result.meta.idempotency_key == script.keys[0]
    assert result.record_id == RECORDED["record_id"]
    # exponential backoff with equal jitter: retry n waits within [c/2, c], c = 0.25 * 2^(n-1)
    assert len(sleeps) == 2
    assert 0.125 <= sleeps[0] <= 0.25
    assert 0.25 <= sleeps[1] <= 0.5


def test_read_timeout_on_a_post_is_retried_with_the_same_key():
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(202, json=RECORDED))
    client, _ = make_client(script)
    record(client)
    assert len(script.requests) == 2 and script.keys[0] == script.keys[1]


def test_each_logical_call_gets_its_own_key_and_an_explicit_key_is_used():
    script = Script(*[httpx.Response(202, json=RECORDED) for _ in range(3)])
    client, _ = make_client(script)
    record(client)
    record(client)
    record(client, idempotency_key="mine-1")
    assert script.keys[0] != script.keys[1]
    assert script.keys[2] == "mine-1"


def test_get_carries_no_idempotency_key_and_is_retried_too():
    script = Script(
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"budget_id": "b-1", "budget_amount": 100}),
    )
    client, _ = make_client(script)
    budget = client.get_budget("b-1")
    assert budget.budget_id == "b-1"
    assert script.keys == [None, None]
    assert script.requests[0].headers["Authorization"] == "Bearer tok"


def test_429_waits_for_retry_after_and_reuses_the_key():
    script = Script(
        error(429, "RATE_LIMIT_VIOLATED", retriable=True, headers={"Retry-After": "2"}),
        httpx.Response(202, json=RECORDED),
    )
    client, sleeps = make_client(script)
    record(client)
    assert sleeps == [2.0]
    assert script.keys[0] == script.keys[1]


def test_503_exhausted_raises_typed_error_with_code_and_correlation_id():
    script = Script(*[error(503, "SERVICE_UNAVAILABLE", retriable=True) for _ in range(4)])
    client, sleeps = make_client(script)
    with pytest.raises(ServiceUnavailable) as caught:
        record(client)
    exc = caught.value
    assert (exc.status, exc.error_code, exc.correlation_id) == (
        503,
        "SERVICE_UNAVAILABLE",
        "corr-1",
    )
    assert exc.retriable is True
    assert exc.attempts == 4
    assert exc.idempotency_key == script.keys[0]
    assert len(set(script.keys)) == 1
    assert len(sleeps) == 3


def test_retry_after_beyond_the_cap_is_raised_at_once():
    script = Script(error(429, "RATE_LIMIT_VIOLATED", headers={"Retry-After": "600"}))
    client, sleeps = make_client(script)
    with pytest.raises(RateLimited) as caught:
        record(client)
    assert caught.value.retry_after == 600.0
    assert sleeps == []


def test_in_flight_409_is_retried_but_a_plain_conflict_is_not():
    script = Script(
        error(409, "CONFLICT", "request in flight", retriable=True),
        httpx.Response(202, json=RECORDED),
        error(409, "CONFLICT", "version mismatch"),
    )
    client, _ = make_client(script)
    record(client)
    assert len(script.requests) == 2
    with pytest.raises(Conflict) as caught:
        record(client)
    assert len(script.requests) == 3
    assert caught.value.message == "version mismatch"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "VALIDATION_ERROR", ValidationError),
        (401, "UNAUTHORIZED", AuthenticationError),
        (403, "FORBIDDEN", PermissionDenied),
        (404, "NOT_FOUND", NotFound),
        (413, "PAYLOAD_TOO_LARGE", PayloadTooLarge),
        (422, "IDEMPOTENCY_KEY_REUSED", IdempotencyKeyReused),
        (500, "INTERNAL_ERROR", InternalServerError),
    ],
)
def test_errors_map_to_typed_exceptions_and_are_not_retried(status, code, cls):
    script = Script(error(status, code, details={"field": ["bad"]}))
    client, sleeps = make_client(script)
    with pytest.raises(cls) as caught:
        record(client)
    exc = caught.value
    assert (exc.status, exc.error_code, exc.correlation_id) == (status, code, "corr-1")
    assert exc.details == {"field": ["bad"]}
    assert len(script.requests) == 1 and sleeps == []


def test_no_answer_after_retries_is_a_transport_error_naming_the_key():
    script = Script(*[httpx.ConnectError("refused") for _ in range(3)])
    client, _ = make_client(script, retry=RetryPolicy(max_retries=2))
    with pytest.raises(TransportError) as caught:
        record(client, correlation_id="c-42")
    assert caught.value.attempts == 3
    assert caught.value.idempotency_key == script.keys[0]
    assert caught.value.correlation_id == "c-42"
    assert {r.headers["X-Correlation-ID"] for r in script.requests} == {"c-42"}


def test_rate_limit_headers_are_exposed_on_results_and_errors():
    headers = {
        "RateLimit-Policy": '"cost_record";q=10000;w=60',
        "RateLimit": '"cost_record";r=9998;t=42',
        "X-RateLimit-Limit": "10000",
        "X-RateLimit-Remaining": "9998",
        "X-RateLimit-Reset": "1735689642",
        "X-Correlation-ID": "corr-9",
    }
    script = Script(httpx.Response(202, json=RECORDED, headers=headers))
    client, _ = make_client(script)
    result = record(client)
    assert result.meta.rate_limit == RateLimitInfo(
        policy="cost_record",
        limit=10000,
        window_seconds=60,
        remaining=9998,
        reset_after=42,
        reset_at=1735689642,
        retry_after=None,
    )
    assert result.meta.correlation_id == "corr-9"


def test_money_goes_out_exact_and_comes_back_as_decimal():
    script = Script(
        httpx.Response(
            200,
            content=b'{"allowed": true, "remaining_budget": 0.1000000000, '
            b'"utilization_ratio": 0.9, "reservation_id": "h-1", "applied_budgets": []}',
            headers={"Content-Type": "application/json"},
        )
    )
    client, _ = make_client(script)
    check = client.check_budget(
        resource_type="llm", estimated_cost=Decimal("0.1000000001"), operation_context={"a": 1}
    )
    sent = json.loads(script.requests[0].content)
    assert sent == {
        "resource_type": "llm",
        "estimated_cost": "0.1000000001",
        "operation_context": {"a": 1},
    }
    assert check.remaining_budget == Decimal("0.1000000000")
    assert check.utilization_ratio == Decimal("0.9")
    assert check.reservation_id == "h-1"


def test_a_denied_rate_limit_check_answered_429_is_a_result_not_retried():
    script = Script(
        httpx.Response(
            429,
            json={"allowed": False, "retry_after": 3, "policy_id": "p-1", "policies": []},
            headers={"Retry-After": "3"},
        )
    )
    client, sleeps = make_client(script)
    result = client.check_rate_limit(resource_type="api")
    assert result.allowed is False and result.retry_after == 3
    assert result.meta.rate_limit.retry_after == 3.0
    assert sleeps == [] and len(script.requests) == 1


def test_paths_are_quoted_and_base_url_gets_the_api_prefix():
    assert normalize_base_url("http://h:8000") == "http://h:8000/budget/v1/"
    assert normalize_base_url("http://h:8000/budget/v1/") == "http://h:8000/budget/v1/"
    script = Script(error(404, "NOT_FOUND"))
    client, _ = make_client(script)
    with pytest.raises(NotFound):
        client.get_budget("../alerts")
    assert script.requests[0].url.raw_path == b"/budget/v1/budgets/..%2Falerts"


def test_health_is_unauthenticated_and_a_503_is_returned():
    script = Script(httpx.Response(503, json={"status": "DOWN"}))
    client, _ = make_client(script, retry=RetryPolicy(max_retries=0))
    health = client.health()
    assert health.status == "DOWN" and health.meta.status_code == 503
    assert "Authorization" not in script.requests[0].headers


def test_backoff_is_capped():
    policy = RetryPolicy(max_retries=10, backoff_base=1.0, backoff_max=4.0)
    delays = [retry_delay(policy, n, rng=random.Random(1)) for n in range(1, 8)]
    assert all(d <= 4.0 for d in delays)
    assert delays[-1] >= 2.0


def test_async_client_retries_with_the_same_key():
    script = Script(
        httpx.ConnectError("refused"),
        error(503, "SERVICE_UNAVAILABLE", retriable=True),
        httpx.Response(202, json=RECORDED),
    )
    sleeps: list[float] = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    async def main():
        async with AsyncBudgetClient(
            "http://budget.test",
            api_key="k",
            transport=httpx.MockTransport(script),
            sleep=fake_sleep,
        ) as client:
            return await client.record_cost(resource_type="gpu", cost_amount=1)

    result = asyncio.run(main())
    assert result.meta.attempts == 3
    assert len(set(script.keys)) == 1
    assert script.requests[0].headers["X-API-Key"] == "k"
    assert len(sleeps) == 2


def test_iterating_a_cursor_list_follows_next_cursor():
    script = Script(
        httpx.Response(200, json={"receipts": [{"receipt_id": "a"}], "next_cursor": "c1"}),
        httpx.Response(200, json={"receipts": [{"receipt_id": "b"}], "next_cursor": None}),
    )
    client, _ = make_client(script)
    assert [r["receipt_id"] for r in client.iter_receipts(gate_id="cost-tracking")] == ["a", "b"]
    assert script.requests[0].url.params["cursor"] == ""
    assert script.requests[1].url.params["cursor"] == "c1"


def test_the_sync_client_is_generated_from_the_async_one():
    result = subprocess.run(
        [sys.executable, str(ROOT / "client" / "tools" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_iterating_a_page_list_walks_every_page():
    def page(n, ids):
        return httpx.Response(
            200,
            json={
                "alerts": [{"alert_id": i} for i in ids],
                "pagination": {"page": n, "page_size": 2, "total_count": 3, "total_pages": 2},
            },
        )

    script = Script(page(1, ["a", "b"]), page(2, ["c"]))
    client, _ = make_client(script)
    assert [a.alert_id for a in client.iter_alerts(status="active")] == ["a", "b", "c"]
    assert [r.url.params["page"] for r in script.requests] == ["1", "2"]
    assert {r.url.params["status"] for r in script.requests} == {"active"}


def test_a_post_that_only_reads_carries_no_key_and_retries_share_a_correlation_id():
    script = Script(
        error(503, "SERVICE_UNAVAILABLE", retriable=True),
        httpx.Response(200, json={"report_id": "r", "breakdown": [], "total_cost": 0}),
    )
    client, _ = make_client(script)
    client.cost_report(report_type="summary")
    assert script.keys == [None, None]
    ids = {r.headers["X-Correlation-ID"] for r in script.requests}
    assert len(ids) == 1 and ids != {""}
