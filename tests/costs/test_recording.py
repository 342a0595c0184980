"""Recording one cost (SPEC 4.1): durable 202, unit prices, currencies, time bounds, errors."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from costs import services
from costs.models import CostDailyRollup, CostRecord
from receipts.models import Receipt
from receipts.services import verify_stored
from tests.costs.conftest import BASE, NOW

pytestmark = pytest.mark.django_db


def post(client, body, **kw):
    return client.post(f"{BASE}/record", body, format="json", **kw)


def test_record_answers_202_with_a_durable_record_and_a_signed_receipt(svc):
    r = post(svc, {"resource_type": "llm_tokens", "cost_amount": "1.25", "service_name": "chat"})
    assert r.status_code == 202
    body = r.json()
    assert set(body) >= {"record_id", "recorded_at", "cost_amount", "receipt_id", "correlation_id"}
    assert body["cost_amount"] == 1.25
    assert body["recorded_at"] == "2024-05-15T12:00:00Z"
    assert body["correlation_id"] == r["X-Correlation-ID"]
    record = CostRecord.objects.get(pk=body["record_id"])
    assert (record.cost_amount, record.currency, record.attributed_to_id) == (
        D("1.25"),
        "USD",
        "t-acme",
    )
    receipt = Receipt.objects.get(pk=body["receipt_id"])
    assert receipt.gate_id == "cost-tracking"
    assert verify_stored(receipt).valid
    assert json.loads(receipt.canonical)["result"]["record_id"] == body["record_id"]
    rollup = CostDailyRollup.objects.get()
    assert (rollup.day.isoformat(), rollup.total_cost, rollup.record_count) == (
        "2024-05-15",
        D("1.25"),
        1,
    )


def test_cost_is_quantity_times_unit_price_when_omitted(svc):
    services.set_unit_price(
        resource_type="gpu_hours", unit_price=D("2.4750"), effective_from=NOW - timedelta(days=1)
    )
    r = post(svc, {"resource_type": "gpu_hours", "usage_quantity": "3.5", "usage_unit": "hour"})
    assert r.status_code == 202, r.content
    record = CostRecord.objects.get(pk=r.json()["record_id"])
    assert record.cost_amount == D("8.6625")
    assert record.unit_price == D("2.475")
    assert record.currency == "USD"


def test_unit_price_in_another_currency_is_converted(svc, eur_usd):
    services.set_unit_price(
        resource_type="gpu_hours",
        unit_price=D("2"),
        currency="EUR",
        effective_from=NOW - timedelta(days=1),
    )
    r = post(svc, {"resource_type": "gpu_hours", "usage_quantity": "3", "currency": "USD"})
    assert r.status_code == 202, r.content
    assert CostRecord.objects.get().cost_amount == D("6.6")


def test_no_unit_price_is_a_400_and_nothing_is_stored(svc):
    r = post(svc, {"resource_type": "gpu_hours", "usage_quantity": "3"})
    assert r.status_code == 400
    assert r.json()["error_code"] == "VALIDATION_ERROR"
    assert r.json()["details"]["reason"] == "COST_CALCULATION_ERROR"
    assert CostRecord.objects.count() == 0
    assert Receipt.objects.count() == 0


def test_timestamp_up_to_five_minutes_ahead_is_accepted_and_beyond_refused(svc):
    ok = post(svc, {"resource_type": "x", "cost_amount": 1, "timestamp": "2024-05-15T12:05:00Z"})
    assert ok.status_code == 202
    late = post(
        svc, {"resource_type": "x", "cost_amount": 1, "timestamp": "2024-05-15T12:05:00.001Z"}
    )
    assert late.status_code == 400
    assert "timestamp" in late.json()["details"]
    assert CostRecord.objects.count() == 1


def test_backfill_lands_on_its_own_day(svc):
    r = post(svc, {"resource_type": "x", "cost_amount": "2", "timestamp": "2023-12-31"})
    assert r.status_code == 202
    record = CostRecord.objects.get()
    assert record.timestamp == datetime(2023, 12, 31, tzinfo=UTC)
    assert CostDailyRollup.objects.get().day.isoformat() == "2023-12-31"


def test_offset_timestamps_are_stored_in_utc(svc):
    r = post(
        svc, {"resource_type": "x", "cost_amount": "2", "timestamp": "2024-05-15T01:30:00+02:00"}
    )
    assert r.status_code == 202
    assert CostRecord.objects.get().timestamp == datetime(2024, 5, 14, 23, 30, tzinfo=UTC)
    assert CostDailyRollup.objects.get().day.isoformat() == "2024-05-14"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cost_amount": 1}, "resource_type"),
        ({"resource_type": "x"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": -1}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": "abc"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": True}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": "NaN"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": "1.00000000001"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": "1e30"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": "1000000000000000"}, "cost_amount"),
        ({"resource_type": "x", "cost_amount": 1, "currency": "dollars"}, "currency"),
        ({"resource_type": "x", "cost_amount": 1, "usage_quantity": -2}, "usage_quantity"),
        (
            {"resource_type": "x", "cost_amount": 1, "attributed_to_type": "team"},
            "attributed_to_type",
        ),
        (
            {"resource_type": "x", "cost_amount": 1, "attributed_to_type": "user"},
            "attributed_to_id",
        ),
        ({"resource_type": "x", "cost_amount": 1, "tags": {"a": 1}}, "tags"),
        (
            {"resource_type": "x", "cost_amount": 1, "tags": {f"k{i}": "v" for i in range(51)}},
            "tags",
        ),
        ({"resource_type": "x", "cost_amount": 1, "tags": ["a"]}, "tags"),
        ({"resource_type": "x", "cost_amount": 1, "timestamp": "yesterday"}, "timestamp"),
        ({"resource_type": "x", "cost_amount": 1, "timestamp": "2024-05-15T10:00:00"}, "timestamp"),
        ({"resource_type": "x", "cost_amount": 1, "timestamp": 1715767200}, "timestamp"),
        ({"resource_type": "x", "cost_amount": 1, "timestamp": ""}, "timestamp"),
        (
            {
                "resource_type": "x",
                "cost_amount": 1,
                "timestamp": "2024-05-15T10:00:00Z" + " " * 60,
            },
            "timestamp",
        ),
        ({"resource_type": "x", "cost_amount": 1, "reservation_id": "nope"}, "reservation_id"),
        ({"resource_type": "x", "cost_amount": 1, "operation_context": "p1"}, "operation_context"),
        ({"resource_type": "x" * 129, "cost_amount": 1}, "resource_type"),
        ({"resource_type": "x", "cost_amount": 1, "colour": "red"}, "colour"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field_and_stores_nothing(svc, body, field):
    r = post(svc, body)
    assert r.status_code == 400, r.content
    assert r.json()["error_code"] == "VALIDATION_ERROR"
    assert field in r.json()["details"]
    assert CostRecord.objects.count() == 0


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b'"x"', b"null", b"\xff\xfe"])
def test_malformed_bodies_are_400s(svc, raw):
    r = svc.post(f"{BASE}/record", raw, content_type="application/json")
    assert r.status_code == 400
    assert CostRecord.objects.count() == 0


def test_a_foreign_tenant_id_is_a_403_and_stores_nothing(svc):
    r = post(svc, {"tenant_id": "t-globex", "resource_type": "x", "cost_amount": 1})
    assert r.status_code == 403
    assert CostRecord.objects.count() == 0


def test_a_repeated_idempotency_key_returns_the_first_record(svc):
    first = post(svc, {"resource_type": "x", "cost_amount": 1, "idempotency_key": "k1"})
    again = post(svc, {"resource_type": "x", "cost_amount": 1, "idempotency_key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["record_id"] == first.json()["record_id"]
    assert again.json()["duplicate"] is True
    assert CostRecord.objects.count() == 1
    assert CostDailyRollup.objects.get().record_count == 1


def test_idempotency_key_header_replays_the_answer(svc):
    body = {"resource_type": "x", "cost_amount": 1}
    first = post(svc, body, HTTP_IDEMPOTENCY_KEY="abc")
    again = post(svc, body, HTTP_IDEMPOTENCY_KEY="abc")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["record_id"] == first.json()["record_id"]
    assert CostRecord.objects.count() == 1
    other = post(svc, {**body, "cost_amount": 2}, HTTP_IDEMPOTENCY_KEY="abc")
    assert other.status_code == 422
    assert CostRecord.objects.count() == 1


def test_attribution_and_context_are_kept(svc):
    r = post(
        svc,
        {
            "resource_type": "x",
            "cost_amount": 1,
            "attributed_to_type": "project",
            "attributed_to_id": "p1",
            "operation_context": {"user_id": "u1"},
            "tags": {"env": "prod"},
            "region": "eu-west-1",
        },
    )
    assert r.status_code == 202
    got = svc.get(f"{BASE}/{r.json()['record_id']}").json()
    assert (got["attributed_to_type"], got["attributed_to_id"]) == ("project", "p1")
    assert got["operation_context"] == {"user_id": "u1"}
    assert got["tags"] == {"env": "prod"}
    assert got["region"] == "eu-west-1"
    assert got["status"] == "active"


@pytest.mark.parametrize(
    "body",
    [
        {"resource_type": "x\u0000y", "cost_amount": 1},
        {"resource_type": "x", "cost_amount": 1, "tags": {"a\ud800": "b"}},
        {"resource_type": "x", "cost_amount": 1, "operation_context": {"k": "\u0000"}},
        {"resource_type": "x", "cost_amount": 1, "operation_context": {"k": "\udfff"}},
        {
            "resource_type": "x",
            "cost_amount": 1,
            "operation_context": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
        },
        {"resource_type": "x", "cost_amount": 1, "operation_context": {"k": "v" * 9000}},
        {"resource_type": "x", "cost_amount": 1, "timestamp": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_unstorable_input_is_a_400_never_a_500(svc, body):
    raw = json.dumps(body).encode()  # lone surrogates travel as \\u escapes
    r = svc.post(f"{BASE}/record", raw, content_type="application/json")
    assert r.status_code == 400, r.content
    assert CostRecord.objects.count() == 0


@pytest.mark.postgres
def test_huge_amounts_sum_in_rollups_without_overflow(svc):
    body = {"resource_type": "x", "cost_amount": "999999999999999.9999999999"}
    for _ in range(3):
        assert post(svc, body).status_code == 202
    assert CostDailyRollup.objects.get().total_cost == D("2999999999999999.9999999997")
    body = json.loads(svc.get(f"{BASE}/reports").content, parse_float=D)
    assert body["total_cost"] == D("2999999999999999.9999999997")
