"""Every answer of the quotas API matches the response schema the code generates."""

import pytest

from tests.events.schema import assert_documented
from tests.quotas.conftest import BASE, T0, allocate, consume, post

pytestmark = pytest.mark.django_db

PERIOD = {"period_start": "2025-03-01", "period_end": "2025-04-01"}


@pytest.fixture(autouse=True)
def _in_march(time_machine):
    time_machine.move_to(T0.replace(day=10), tick=False)


def test_allocate_list_detail_update_answers_match_the_schema(admin):
    response = post(
        admin,
        "/quotas/allocate",
        {"resource_type": "api_calls", "allocated_amount": 10, "max_burst_amount": "2.5", **PERIOD},
    )
    created = assert_documented(response, f"{BASE}/quotas/allocate", "post")
    quota_id = created["quota_id"]
    assert created["allocated_amount"] == 10

    listed = assert_documented(admin.get(f"{BASE}/quotas"), f"{BASE}/quotas", "get")
    assert [q["quota_id"] for q in listed["quotas"]] == [quota_id]
    detail = admin.get(f"{BASE}/quotas/{quota_id}")
    assert assert_documented(detail, f"{BASE}/quotas/{{quota_id}}", "get")["version"] == 1
    patched = admin.patch(f"{BASE}/quotas/{quota_id}", {"allocated_amount": 20}, format="json")
    assert assert_documented(patched, f"{BASE}/quotas/{{quota_id}}", "patch")["version"] == 2
    put = admin.put(f"{BASE}/quotas/{quota_id}", {"auto_renew": False}, format="json")
    assert assert_documented(put, f"{BASE}/quotas/{{quota_id}}", "put")["auto_renew"] is False


def test_strategy_allocation_answer_matches_the_schema(admin):
    response = post(
        admin,
        "/quotas/allocate",
        {"resource_type": "gpu", "strategy": {"type": "reserved", "amount": 7}, **PERIOD},
    )
    body = assert_documented(response, f"{BASE}/quotas/allocate", "post")
    assert body["strategy"] == {"type": "reserved", "amount": "7"}


def test_both_batch_forms_answer_as_documented(admin):
    items = [
        {"resource_type": "api_calls", "allocated_amount": 5, "idempotency_key": "a", **PERIOD},
        {"resource_type": "api_calls", "allocated_amount": 5, "idempotency_key": "a", **PERIOD},
        {"resource_type": "api_calls", "allocated_amount": -1, "idempotency_key": "b"},
        None,
    ]
    listed = post(admin, "/quotas/allocate/batch", {"allocations": items})
    body = assert_documented(listed, f"{BASE}/quotas/allocate/batch", "post")
    assert [r["status"] for r in body["results"]] == ["created", "duplicate", "failed", "failed"]

    pool = post(
        admin,
        "/quotas/allocate/batch",
        {
            "resource_type": "gpu",
            "pool_amount": 100,
            "strategy": "priority",
            **PERIOD,
            "entities": [
                {"allocation_type": "project", "allocated_to_id": "p1", "tier": 1},
                {"allocation_type": "project", "allocated_to_id": "p2", "reserved_amount": 10},
            ],
        },
    )
    body = assert_documented(pool, f"{BASE}/quotas/allocate/batch", "post")
    assert [a["allocated_amount"] for a in body["allocations"]] == [90, 10]


def test_decision_answers_match_the_schema_with_and_without_a_quota(admin, svc):
    nothing = consume(svc, 1)
    body = assert_documented(nothing, f"{BASE}/quotas/consume", "post")
    assert (body["quota_id"], body["allocated_amount"], body["period_end"]) == (None, None, None)

    allocate(admin, allocated_amount=10, max_burst_amount=2, **PERIOD)
    assert assert_documented(consume(svc, 11), f"{BASE}/quotas/consume", "post")["burst_used"] == 1
    denied = assert_documented(consume(svc, 5), f"{BASE}/quotas/consume", "post")
    assert (denied["allowed"], denied["reason"]) == (False, "QUOTA_EXHAUSTED")
    check = post(svc, "/quotas/check", {"resource_type": "api_calls", "amount": 1})
    assert assert_documented(check, f"{BASE}/quotas/check", "post")["warning_level"] == (
        "exhausted"
    )
