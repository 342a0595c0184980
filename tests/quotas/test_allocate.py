"""POST /quotas/allocate: explicit amounts and strategies, overlap 409, 7-day idempotency."""

from datetime import timedelta

import pytest
import time_machine

from events.models import OutboxEvent
from quotas.models import Quota
from receipts.models import Receipt
from tests.quotas.conftest import BASE, T0, D, allocate, consume, events, post, receipt

pytestmark = pytest.mark.django_db


def test_allocate_answers_201_with_the_contract_fields_a_receipt_and_an_event(admin):
    with time_machine.travel(T0, tick=False):
        response = post(
            admin,
            "/quotas/allocate",
            {
                "resource_type": "api_calls",
                "allocated_amount": "1000.50",
                "period_start": "2025-03-01",
                "period_end": "2025-04-01T00:00:00+02:00",
            },
        )

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {
        "quota_id",
        "allocated_at",
        "allocated_amount",
        "correlation_id",
        "receipt_id",
    }
    assert D(body["allocated_amount"]) == D("1000.5")
    assert body["allocated_at"] == "2025-03-01T00:00:00Z"
    assert body["period_end"] == "2025-03-31T22:00:00Z"
    quota = Quota.objects.get(pk=body["quota_id"])
    assert (quota.tenant_id, quota.allocation_type, quota.allocated_to_id) == (
        "t-acme",
        "tenant",
        "t-acme",
    )
    assert quota.renewal_due_at == quota.period_end - timedelta(hours=24)
    signed = receipt(body["receipt_id"])
    assert signed["gate_id"] == "quota-management"
    assert signed["decision"]["status"] == "pass"
    assert signed["result"]["allocated_amount"] == "1000.5"
    [event] = events("quota_allocated")
    assert event["payload"]["quota_id"] == body["quota_id"]
    assert event["payload"]["allocated_amount"] == D("1000.5")
    assert event["payload"]["renewed_from"] is None
    assert event["payload"]["period_start"] == "2025-03-01T00:00:00Z"


def test_defaults_period_is_30_days_from_now(admin):
    with time_machine.travel(T0, tick=False):
        body = allocate(admin)

    quota = Quota.objects.get(pk=body["quota_id"])
    assert quota.period_start == T0
    assert quota.period_end == T0 + timedelta(days=30)
    assert quota.auto_renew is True
    assert quota.renewal_strategy == "same"
    assert quota.max_burst_amount == 0


def test_overlapping_quota_for_the_same_target_and_resource_is_409(admin):
    allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
    before = Quota.objects.count()

    response = post(
        admin,
        "/quotas/allocate",
        {
            "resource_type": "api_calls",
            "allocated_amount": 5,
            "period_start": "2025-03-31T23:59:59Z",
            "period_end": "2025-05-01",
        },
    )

    assert response.status_code == 409
    assert response.json()["error_code"] == "CONFLICT"
    assert "conflicting_quota_id" in response.json()["details"]
    assert Quota.objects.count() == before


def test_adjacent_periods_other_targets_and_other_resources_do_not_overlap(admin):
    allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
    allocate(admin, period_start="2025-04-01", period_end="2025-05-01")  # half-open
    allocate(admin, period_start="2025-03-01", period_end="2025-04-01", resource_type="gpu")
    allocate(
        admin,
        period_start="2025-03-01",
        period_end="2025-04-01",
        allocation_type="project",
        allocated_to_id="p1",
    )

    assert Quota.objects.count() == 4


def test_a_deleted_quota_no_longer_blocks_its_period(admin):
    first = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
    assert admin.delete(f"{BASE}/quotas/{first['quota_id']}").status_code == 204

    allocate(admin, period_start="2025-03-01", period_end="2025-04-01")


@pytest.mark.postgres
def test_the_database_refuses_an_overlap_the_service_did_not_see(admin):
    from django.db import IntegrityError, transaction

    body = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
    quota = Quota.objects.get(pk=body["quota_id"])
    quota.pk = None
    quota.quota_id = __import__("uuid").uuid4()

    with pytest.raises(IntegrityError, match="quota_no_overlap"), transaction.atomic():
        quota.save(force_insert=True)


def test_reserved_strategy_allocates_its_amount(admin):
    body = allocate(admin, allocated_amount=None, strategy={"type": "reserved", "amount": 250})

    quota = Quota.objects.get(pk=body["quota_id"])
    assert quota.allocated_amount == 250
    assert quota.strategy == {"type": "reserved", "amount": "250"}


def test_dynamic_strategy_is_1_2_times_average_use_per_period(admin, svc):
    # Two finished 10-day periods used 300 and 500: 400 per 10 days on average → 480.
    for start, end, used in (
        ("2025-02-01", "2025-02-11", 300),
        ("2025-02-11", "2025-02-21", 500),
    ):
        allocate(admin, period_start=start, period_end=end, auto_renew=False)
        with time_machine.travel(f"{start}T12:00:00Z", tick=False):
            assert consume(svc, used).json()["allowed"] is True

    with time_machine.travel("2025-02-25T00:00:00Z", tick=False):
        body = allocate(
            admin,
            allocated_amount=None,
            strategy={"type": "dynamic"},
            period_start="2025-02-25",
            period_end="2025-03-07",
        )

    assert D(body["allocated_amount"]) == 480
    assert body["strategy"] == {"type": "dynamic"}


def test_dynamic_strategy_scales_to_the_requested_period_and_rounds_up(admin, svc):
    allocate(admin, period_start="2025-02-01", period_end="2025-02-11", auto_renew=False)
    with time_machine.travel("2025-02-02", tick=False):
        consume(svc, 101)

    with time_machine.travel("2025-02-20", tick=False):
        body = allocate(
            admin,
            allocated_amount=None,
            strategy={"type": "dynamic"},
            period_start="2025-02-20",
            period_end="2025-02-25",  # half as long: 50.5 * 1.2 = 60.6 → 61
        )

    assert D(body["allocated_amount"]) == 61


def test_dynamic_strategy_without_history_is_400_and_creates_nothing(admin):
    response = post(
        admin, "/quotas/allocate", {"resource_type": "api_calls", "strategy": {"type": "dynamic"}}
    )

    assert response.status_code == 400
    assert "strategy" in response.json()["details"]
    assert Quota.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource_type": "x"}, "allocated_amount"),
        (
            {"resource_type": "x", "allocated_amount": 1, "strategy": {"type": "dynamic"}},
            "allocated_amount",
        ),
        ({"resource_type": "x", "allocated_amount": 0}, "allocated_amount"),
        ({"resource_type": "x", "allocated_amount": -5}, "allocated_amount"),
        ({"resource_type": "x", "allocated_amount": "abc"}, "allocated_amount"),
        ({"resource_type": "x", "allocated_amount": True}, "allocated_amount"),
        ({"resource_type": "x", "allocated_amount": 1, "max_burst_amount": -1}, "max_burst_amount"),
        (
            {
                "resource_type": "x",
                "allocated_amount": 1,
                "period_start": "2025-03-02",
                "period_end": "2025-03-01",
            },
            "period_end",
        ),
        (
            {"resource_type": "x", "allocated_amount": 1, "period_start": "yesterday"},
            "period_start",
        ),
        (
            {"resource_type": "x", "allocated_amount": 1, "period_end": "9999-12-31T23:59:59Z"},
            "period_end",
        ),
        (
            {"resource_type": "x", "allocated_amount": 1, "allocation_type": "galaxy"},
            "allocation_type",
        ),
        (
            {"resource_type": "x", "allocated_amount": 1, "allocation_type": "user"},
            "allocated_to_id",
        ),
        (
            {"resource_type": "x", "allocated_amount": 1, "allocated_to_id": "someone-else"},
            "allocated_to_id",
        ),
        ({"resource_type": "x" * 129, "allocated_amount": 1}, "resource_type"),
        ({"resource_type": "x", "allocated_amount": 1, "colour": "red"}, "colour"),
        ({"resource_type": "x", "strategy": {"type": "reserved"}}, "strategy"),
        ({"resource_type": "x", "strategy": {"type": "fair_share"}}, "strategy"),
        ({"resource_type": "x", "strategy": "dynamic"}, "strategy"),
        (
            {"resource_type": "x", "allocated_amount": 1, "renewal_strategy": "magic"},
            "renewal_strategy",
        ),
    ],
)
def test_invalid_allocations_are_400_naming_the_field(admin, body, field):
    response = post(admin, "/quotas/allocate", body)

    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert field in response.json()["details"]
    assert Quota.objects.count() == 0
    assert Receipt.objects.count() == 0


def test_malformed_json_is_400(admin):
    response = admin.post(
        f"{BASE}/quotas/allocate", data="{not json", content_type="application/json"
    )

    assert response.status_code == 400


def test_server_owned_fields_are_ignored(admin):
    body = allocate(admin, quota_id="00000000-0000-0000-0000-000000000000", used_amount=999)

    quota = Quota.objects.get(pk=body["quota_id"])
    assert str(quota.pk) != "00000000-0000-0000-0000-000000000000"
    assert quota.used_amount == 0


def test_idempotency_key_replays_for_7_days_then_runs_again(admin):
    request = {"resource_type": "api_calls", "allocated_amount": 10}
    with time_machine.travel(T0, tick=False):
        first = post(admin, "/quotas/allocate", request, HTTP_IDEMPOTENCY_KEY="alloc-1")
    with time_machine.travel(T0 + timedelta(days=6, hours=23), tick=False):
        replay = post(admin, "/quotas/allocate", request, HTTP_IDEMPOTENCY_KEY="alloc-1")
        reused = post(
            admin,
            "/quotas/allocate",
            {**request, "allocated_amount": 11},
            HTTP_IDEMPOTENCY_KEY="alloc-1",
        )

    assert first.status_code == 201
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert reused.status_code == 422
    assert Quota.objects.count() == 1
    assert OutboxEvent.objects.filter(event_type="quota_allocated").count() == 1

    # After 7 days the key is free again; the period overlap now answers (a real 409).
    with time_machine.travel(T0 + timedelta(days=7, seconds=1), tick=False):
        again = post(admin, "/quotas/allocate", request, HTTP_IDEMPOTENCY_KEY="alloc-1")
    assert again.status_code == 409
    assert "Idempotent-Replayed" not in again
