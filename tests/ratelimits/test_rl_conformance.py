"""SPEC-conformance fixes of the review pass: bounds that used to answer 500, the order of checks
on the check endpoint, its headers, the usage-pattern count, emergency capacity requests past
4 h, and PUT as a replacement."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from approvals.models import ApprovalRequest
from budgeting_site.platform.models import AuditLogEntry
from ratelimits import runtime, selectors, services
from ratelimits.engine import Algorithm, LimitSpec, compile_spec, exactly_decidable
from ratelimits.engine.effective import effective_limit
from ratelimits.engine.types import MAX_COUNT
from ratelimits.models import EmergencyGrant, RateLimitPolicy
from receipts.models import Receipt

from .conftest import BASE, NOON, check, make_policy

pytestmark = pytest.mark.django_db

DAY = 86_400
# A token bucket of 7 per day: one request weighs 86,400,000 units (gcd(7, 86,400,000) = 1),
# so at most this many requests (limit + burst) can be held exactly below 2**53 units.
EXACT_ROOM_7_PER_DAY = ((2**53 - 1) // 86_400_000 - 1) // 2


# --- the engine: compile_spec is total, and says what it lowered --------------------------------


def test_compile_caps_a_huge_request_count_at_limit_plus_burst_plus_one():
    spec = LimitSpec(
        key="k", algorithm=Algorithm.SLIDING_WINDOW_LOG, limit=10, window_seconds=60, cost=10**9
    )
    assert compile_spec(spec).n == 11
    bucket = LimitSpec(
        key="k", algorithm=Algorithm.TOKEN_BUCKET, limit=10, window_seconds=60, burst=5, cost=99
    )
    assert compile_spec(bucket).n == 16
    assert compile_spec(LimitSpec(key="k", algorithm=Algorithm.FIXED_WINDOW, limit=10,
                                  window_seconds=60, cost=3)).n == 3  # fmt: skip


def test_compile_lowers_a_bucket_past_2_pow_53_units_instead_of_raising():
    spec = LimitSpec(
        key="k", algorithm=Algorithm.TOKEN_BUCKET, limit=10**12, window_seconds=DAY, drain_limit=7
    )
    assert not exactly_decidable(spec)
    compiled = compile_spec(spec)
    assert compiled.limit == EXACT_ROOM_7_PER_DAY and compiled.burst == 0
    assert compiled.unit == 86_400_000
    assert (compiled.limit + compiled.burst + compiled.n) * compiled.unit < 2**53
    small = LimitSpec(key="k", algorithm=Algorithm.TOKEN_BUCKET, limit=7, window_seconds=DAY)
    assert exactly_decidable(small) and compile_spec(small).limit == 7


def test_effective_limit_of_absurd_factors_is_capped_not_an_overflow():
    assert effective_limit(10, priority=Decimal("1e999999"), time_of_day=Decimal("1e999999")) == (
        MAX_COUNT
    )
    assert effective_limit(10**12, priority=Decimal("1e300")) == MAX_COUNT
    assert effective_limit(10, priority=Decimal("0.5")) == 5


# --- policies: sizes and factors that cannot be decided are a 400 when written ------------------


def test_bucket_policy_too_large_to_decide_exactly_is_400(admin_client):
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {
            "resource_type": "llm",
            "limit_value": 10**12,
            "time_window_seconds": 366 * DAY,
            "burst_capacity": 10**12,
        },
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert set(body["details"]) == {"limit_value", "time_window_seconds"}
    assert RateLimitPolicy.objects.count() == 0
    # The same numbers as a fixed window are fine: a count, not units.
    assert make_policy(admin_client, limit_value=10**12, time_window_seconds=366 * DAY)


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        (
            {"priority_multipliers": {"critical": 1e300}},
            "overrides.priority_multipliers.critical",
            "must be a number > 0 and <= 1000",
        ),
        (
            {"time_of_day_adjustments": {"peak_multiplier": "1e999999"}},
            "overrides.time_of_day_adjustments.peak_multiplier",
            "must be a number > 0 and <= 1000",
        ),
        (
            {"emergency_capacity": 10**18},
            "overrides.emergency_capacity",
            "must be an integer in 0..1000000000000",
        ),
        (
            {"usage_pattern_analysis": {"enabled": True, "lookback_seconds": 10**30}},
            "overrides.usage_pattern_analysis.lookback_seconds",
            "must be an integer in 1..31622400",
        ),
    ],
)
def test_unbounded_override_values_are_400(admin_client, overrides, path, message):
    response = admin_client.post(
        f"{BASE}/rate-limits",
        {
            "resource_type": "llm",
            "limit_value": 10,
            "time_window_seconds": 60,
            "overrides": overrides,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["details"] == {"overrides": {path: message}}
    assert RateLimitPolicy.objects.count() == 0


def test_put_replaces_the_definition_overrides_and_name_left_out_are_cleared(admin_client):
    policy = make_policy(
        admin_client,
        policy_name="llm cap",
        overrides={"emergency_capacity": 5},
        mode="shadow",
    )
    response = admin_client.put(
        f"{BASE}/rate-limits/{policy['policy_id']}",
        {"resource_type": "llm.tokens", "limit_value": 9, "time_window_seconds": 60},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["overrides"] == {} and body["policy_name"] is None
    assert body["mode"] == "enforce" and body["limit_value"] == 9 and body["version"] == 2
    stored = RateLimitPolicy.objects.get()
    assert stored.overrides == {} and stored.policy_name == ""


# --- checks never answer 500 whatever the factors ------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_emergency_capacity_past_exactness_lowers_the_bucket_limit_not_a_500(
    rl_store, service, admin_client, client_for
):
    policy = make_policy(
        admin_client, limit_value=7, time_window_seconds=DAY, algorithm="token_bucket"
    )
    architect = client_for(["system_architect"], sub="arch-1")
    granted = architect.post(
        f"{BASE}/rate-limits/{policy['policy_id']}/emergency-capacity",
        {"extra_requests": 10**12, "duration_seconds": 600},
        format="json",
    )
    assert granted.status_code == 200, granted.content
    answer = check(service, request_count=3)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["allowed"] is True
    assert body["limit_value"] == EXACT_ROOM_7_PER_DAY
    assert body["remaining_requests"] == EXACT_ROOM_7_PER_DAY - 3
    assert answer["X-RateLimit-Limit"] == str(EXACT_ROOM_7_PER_DAY)
    services.drain_receipts(full_scan=True)
    receipt = Receipt.objects.get(receipt_id=body["receipt_id"]).as_dict()
    assert receipt["result"]["policies"][0]["limit_value"] == EXACT_ROOM_7_PER_DAY


@time_machine.travel(NOON, tick=False)
@pytest.mark.parametrize("multiplier", ["1e300", "1e999999"])
def test_a_stored_policy_with_an_absurd_multiplier_is_decided_not_a_500(
    rl_store, service, multiplier
):
    # Written before the bounds existed (straight to the table, past the validation).
    RateLimitPolicy.objects.create(
        tenant_id="t-acme",
        scope_type="tenant",
        scope_id="t-acme",
        resource_type="llm.tokens",
        limit_value=10,
        time_window_seconds=60,
        algorithm="fixed_window",
        overrides={"priority_multipliers": {"critical": multiplier}},
        created_at=NOON,
        updated_at=NOON,
    )
    runtime.forget()
    answer = check(service, priority="critical")
    assert answer.status_code == 200, answer.content
    assert answer.json()["allowed"] is True
    assert answer.json()["limit_value"] == MAX_COUNT
    assert answer.json()["remaining_requests"] == MAX_COUNT - 1


@time_machine.travel(NOON, tick=False)
def test_a_huge_request_count_is_denied_and_consumes_nothing(rl_store, service, admin_client):
    make_policy(admin_client, limit_value=10, algorithm="sliding_window_log")
    denied = check(service, request_count=10**9)
    assert denied.status_code == 200
    assert denied.json()["allowed"] is False
    assert denied.json()["remaining_requests"] == 10
    assert denied.json()["retry_after"] == 3600
    admitted = check(service)
    assert admitted.json()["allowed"] is True and admitted.json()["remaining_requests"] == 9


# --- the check endpoint: 401 → 429 → 403 → 400, and headers on every answer ---------------------


@time_machine.travel(NOON, tick=False)
def test_check_answers_429_before_403_and_400_once_this_apis_limit_is_spent(
    rl_store, service, client_for, settings
):
    settings.API_RATE_LIMITS = {"default": 1000, "rate_limit_check": 2}
    auditor = client_for(["auditor"])
    # Within the limit: the refusals are what they are, with this API's headers.
    forbidden = check(auditor)
    assert forbidden.status_code == 403
    assert forbidden["RateLimit-Policy"] == '"rate_limit_check";q=2;w=60'
    assert forbidden["X-RateLimit-Remaining"] == "1"
    assert check(service).status_code == 200
    # Spent: every refusal that SPEC orders after 429 is a 429 now.
    assert check(service).json()["error_code"] == "RATE_LIMIT_VIOLATED"
    for response in (
        check(auditor),
        check(service, tenant_id="t-globex"),
        check(service, request_count=0),
        service.post(f"{BASE}/rate-limits/check", b"{bad", content_type="application/json"),
    ):
        assert response.status_code == 429, response.content
        assert response.json()["error_code"] == "RATE_LIMIT_VIOLATED"
        assert response["Retry-After"] == "30"
    # The anonymous caller is still a 401 (before any limit).
    from rest_framework.test import APIClient

    assert check(APIClient()).status_code == 401


@time_machine.travel(NOON, tick=False)
def test_foreign_tenant_on_the_check_is_403_and_audited_within_the_limit(
    rl_store, service, settings
):
    settings.API_RATE_LIMITS = {"default": 1000, "rate_limit_check": 5}
    response = check(service, tenant_id="t-globex")
    assert response.status_code == 403
    assert response["X-RateLimit-Limit"] == "5"
    assert AuditLogEntry.objects.filter(target_tenant_id="t-globex").count() == 1


def test_read_role_non_dry_run_with_a_bad_body_is_403_not_400(client_for):
    auditor = client_for(["auditor"])
    response = auditor.post(
        f"{BASE}/rate-limits/check", {"resource_type": "x", "request_count": 0}, format="json"
    )
    assert response.status_code == 403
    dry = auditor.post(
        f"{BASE}/rate-limits/check",
        {"resource_type": "x", "request_count": 0, "dry_run": True},
        format="json",
    )
    assert dry.status_code == 400
    assert dry.json()["details"] == {
        "request_count": ["Ensure this value is greater than or equal to 1."]
    }


@time_machine.travel(NOON, tick=False)
def test_check_without_a_matching_policy_carries_this_apis_limit_headers(
    rl_store, service, settings
):
    settings.API_RATE_LIMITS = {"default": 1000, "rate_limit_check": 5}
    response = check(service)
    assert response.status_code == 200 and response.json()["policy_id"] is None
    assert response["RateLimit-Policy"] == '"rate_limit_check";q=5;w=60'
    # A token bucket of 5 per minute drains one request in 12 s.
    assert response["RateLimit"] == '"rate_limit_check";r=4;t=12'
    assert response["X-RateLimit-Limit"] == "5"
    assert response["X-RateLimit-Remaining"] == "4"
    assert response["X-RateLimit-Reset"] == str(int(NOON.timestamp()) + 12)


# --- the usage-pattern factor counts request_count of admitted, non-dry-run checks --------------


@time_machine.travel(NOON, tick=False)
def test_usage_factor_counts_request_counts_not_checks_and_skips_dry_runs(
    rl_store, service, admin_client
):
    policy = make_policy(
        admin_client,
        limit_value=100,
        time_window_seconds=60,
        overrides={"usage_pattern_analysis": {"enabled": True, "lookback_seconds": 60}},
    )
    assert check(service, request_count=50).json()["allowed"] is True
    assert check(service, request_count=30).json()["allowed"] is True
    assert check(service, request_count=100, dry_run=True).json()["allowed"] is False
    assert check(service, request_count=15, dry_run=True).json()["allowed"] is True
    assert check(service, request_count=21).json()["allowed"] is False  # denied: not use
    services.drain_receipts(full_scan=True)
    used = selectors.usage_over(
        tenant_id="t-acme", policy_id=policy["policy_id"], since=NOON - timedelta(seconds=60)
    )
    assert used == 80
    # 80 of 100 is the high threshold (0.8): scale up by 1.25. Counting checks (2) would have
    # scaled it down.
    assert services.adjust_usage_factors() == 1
    assert RateLimitPolicy.objects.get(pk=policy["policy_id"]).usage_factor == Decimal("1.25")


@time_machine.travel(NOON, tick=False)
def test_usage_of_a_shadow_policy_that_denied_is_not_counted(rl_store, service, admin_client):
    enforce = make_policy(admin_client, limit_value=100)
    shadow = make_policy(
        admin_client, limit_value=2, scope_type="user", scope_id="u-1", mode="shadow"
    )
    answer = check(service, request_count=5, scopes={"user": "u-1"}).json()
    assert answer["allowed"] is True and answer["shadow_denied"] is True
    assert check(service, request_count=1, scopes={"user": "u-1"}).json()["shadow_denied"] is False
    services.drain_receipts(full_scan=True)
    assert Receipt.objects.filter(decision_status="warn").count() == 1
    since = NOON - timedelta(hours=1)
    assert (
        selectors.usage_over(tenant_id="t-acme", policy_id=enforce["policy_id"], since=since) == 6
    )
    assert selectors.usage_over(tenant_id="t-acme", policy_id=shadow["policy_id"], since=since) == 1


@time_machine.travel(NOON, tick=False)
def test_usage_job_survives_a_policy_with_unusable_settings(admin_client):
    good = make_policy(
        admin_client,
        limit_value=10,
        overrides={"usage_pattern_analysis": {"enabled": True, "lookback_seconds": 3600}},
    )
    RateLimitPolicy.objects.create(
        tenant_id="t-acme",
        scope_type="user",
        scope_id="u-legacy",
        resource_type="llm.tokens",
        limit_value=10,
        time_window_seconds=60,
        overrides={"usage_pattern_analysis": {"enabled": True, "lookback_seconds": 10**30}},
        created_at=NOON,
        updated_at=NOON,
    )
    assert services.adjust_usage_factors() == 1
    assert RateLimitPolicy.objects.get(pk=good["policy_id"]).usage_factor == Decimal("0.75")


# --- emergency capacity past 4 h: a receipt, and a repeat is the same request -------------------


def test_emergency_request_past_four_hours_has_a_receipt_and_a_repeat_is_the_same_grant(
    rl_store, service, admin_client, client_for, django_capture_on_commit_callbacks
):
    architect = client_for(["system_architect"], sub="arch-1")
    controller = client_for(["financial_controller"], sub="fc-1")
    url_body = {"extra_requests": 5, "duration_seconds": 5 * 3600, "reason": "launch"}
    with time_machine.travel(NOON, tick=False):
        policy = make_policy(admin_client, limit_value=10)
        url = f"{BASE}/rate-limits/{policy['policy_id']}/emergency-capacity"
        first = architect.post(url, url_body, format="json").json()
        again = architect.post(url, {**url_body, "extra_requests": 7}, format="json").json()
        assert again["grant_id"] == first["grant_id"]
        assert again["approval_id"] == first["approval_id"]
        assert again["extra_requests"] == 5 and again["status"] == "pending_approval"
        assert EmergencyGrant.objects.count() == 1 and ApprovalRequest.objects.count() == 1
        receipt = Receipt.objects.get(receipt_id=first["receipt_id"]).as_dict()
        assert receipt["gate_id"] == "approval"
        assert receipt["decision"]["status"] == "soft_block"
        assert receipt["result"]["grant_id"] == first["grant_id"]
        assert receipt["result"]["approval_id"] == first["approval_id"]
        assert again["receipt_id"] != first["receipt_id"]
    with time_machine.travel(NOON + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            decided = controller.post(
                f"{BASE}/approvals/{first['approval_id']}/approve", {"comment": "ok"}, format="json"
            )
        assert decided.status_code == 200, decided.content
        # One grant of 5, not two riding on the same approval.
        assert check(service, dry_run=True).json()["limit_value"] == 15


def test_receipt_inputs_of_a_check_are_json_safe(rl_store, service, admin_client):
    with time_machine.travel(NOON, tick=False):
        make_policy(admin_client, limit_value=3, algorithm="leaky_bucket")
        body = check(service).json()
        services.drain_receipts(full_scan=True)
        stored = Receipt.objects.get(receipt_id=body["receipt_id"])
        signed = json.loads(stored.canonical)
        assert signed["inputs"]["request_count"] == 1 and signed["inputs"]["dry_run"] is False
        assert signed["result"]["policies"][0]["delay_seconds"] == "0"
