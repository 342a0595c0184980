"""Batch recording (SPEC 4.1): per-item idempotency keys, partial success in input order, one
receipt per batch, 413 above 1000, and exactly-once under concurrency."""

import hashlib
import json
import threading
import uuid
from decimal import Decimal as D

import pytest
from django.db import connection
from rest_framework.test import APIClient

from budgeting_site.platform.auth import issue_jwt
from costs.models import CostDailyRollup, CostRecord
from costs.selectors import record_dict
from receipts.canonical import canonical_bytes, to_jsonable
from receipts.models import Receipt
from tests.costs.conftest import BASE

pytestmark = pytest.mark.django_db


def items(n, prefix="k", **extra):
    return [
        {
            "idempotency_key": f"{prefix}{i}",
            "resource_type": "llm_tokens",
            "cost_amount": f"{i}.01",
            "service_name": "chat",
            **extra,
        }
        for i in range(n)
    ]


def post(client, records):
    return client.post(f"{BASE}/record/batch", {"records": records}, format="json")


def test_batch_creates_every_record_with_one_receipt(svc):
    r = post(svc, items(5))
    assert r.status_code == 202, r.content
    body = r.json()
    assert (body["processed_count"], body["duplicate_count"], body["failed_count"]) == (5, 0, 0)
    assert [x["index"] for x in body["results"]] == [0, 1, 2, 3, 4]
    assert [x["status"] for x in body["results"]] == ["created"] * 5
    assert CostRecord.objects.count() == 5
    assert set(CostRecord.objects.values_list("receipt_id", flat=True)) == {
        uuid.UUID(body["receipt_id"])
    }
    assert Receipt.objects.count() == 1
    receipt = json.loads(Receipt.objects.get().canonical)
    listed = receipt["result"]["items"]
    assert [i["index"] for i in listed] == [0, 1, 2, 3, 4]
    # Each item's hash is the sha256 of the RFC 8785 form of the record as read back.
    record = CostRecord.objects.get(pk=listed[0]["id"])
    digest = hashlib.sha256(canonical_bytes(to_jsonable(record_dict(record)))).hexdigest()
    assert listed[0]["sha256"] == f"sha256:{digest}"
    assert CostDailyRollup.objects.get().total_cost == D("10.05")


def test_the_same_batch_twice_creates_each_record_once(svc):
    first = post(svc, items(4)).json()
    second = post(svc, items(4)).json()
    assert (second["processed_count"], second["duplicate_count"]) == (0, 4)
    assert [x["status"] for x in second["results"]] == ["duplicate"] * 4
    assert [x["record_id"] for x in second["results"]] == [x["record_id"] for x in first["results"]]
    assert CostRecord.objects.count() == 4
    assert CostDailyRollup.objects.get().record_count == 4


def test_a_failing_item_does_not_fail_the_others(svc):
    batch = items(4)
    batch[1]["cost_amount"] = "-3"
    batch[2] = {"idempotency_key": "nokey-cost", "resource_type": "gpu", "usage_quantity": 2}
    r = post(svc, batch)
    assert r.status_code == 202
    body = r.json()
    assert (body["processed_count"], body["failed_count"]) == (2, 2)
    statuses = [(x["index"], x["status"], x["error_code"]) for x in body["results"]]
    assert statuses == [
        (0, "created", None),
        (1, "failed", "VALIDATION_ERROR"),
        (2, "failed", "COST_CALCULATION_ERROR"),
        (3, "created", None),
    ]
    assert body["results"][1]["record_id"] is None
    assert "cost_amount" in body["results"][1]["message"]
    assert CostRecord.objects.count() == 2
    # A failed item's key is not used up: it can be sent again, fixed.
    batch[1]["cost_amount"] = "3"
    again = post(svc, batch).json()
    assert [x["status"] for x in again["results"]] == [
        "duplicate",
        "created",
        "failed",
        "duplicate",
    ]


def test_items_without_idempotency_key_fail(svc):
    r = post(svc, [{"resource_type": "x", "cost_amount": 1}])
    assert r.json()["results"][0]["status"] == "failed"
    assert "idempotency_key" in r.json()["results"][0]["message"]
    assert CostRecord.objects.count() == 0


def test_a_key_repeated_inside_one_batch_is_a_duplicate_of_its_first(svc):
    batch = [*items(2), items(1)[0]]
    body = post(svc, batch).json()
    assert [x["status"] for x in body["results"]] == ["created", "created", "duplicate"]
    assert body["results"][2]["record_id"] == body["results"][0]["record_id"]
    assert CostRecord.objects.count() == 2


def test_above_1000_is_a_413_and_nothing_is_stored(svc):
    r = post(svc, items(1001))
    assert r.status_code == 413
    assert r.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert CostRecord.objects.count() == 0
    assert post(svc, items(1000)).status_code == 202
    assert CostRecord.objects.count() == 1000


@pytest.mark.parametrize("body", [{}, {"records": []}, {"records": "x"}, {"records": [], "x": 1}])
def test_malformed_batches_are_400s(svc, body):
    r = svc.post(f"{BASE}/record/batch", body, format="json")
    assert r.status_code == 400
    assert CostRecord.objects.count() == 0


def test_an_item_naming_another_tenant_is_a_403_for_the_whole_batch(svc):
    batch = items(2)
    batch[1]["tenant_id"] = "t-globex"
    assert post(svc, batch).status_code == 403
    assert CostRecord.objects.count() == 0


def test_keys_are_per_tenant(svc, client_for):
    post(svc, items(2))
    other = post(client_for("t-globex", ["service"]), items(2)).json()
    assert other["processed_count"] == 2
    assert CostRecord.objects.filter(tenant_id="t-globex").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_threads_posting_the_same_batch_create_each_record_once(frozen):
    token = issue_jwt(tenant_id="t-acme", roles=["service"], sub="svc", ttl_seconds=86400)
    batch = items(200, prefix="conc")
    answers = []
    barrier = threading.Barrier(8)

    def worker():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            answers.append(post(client, batch))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 8
    bodies = [a.json() for a in answers]
    assert sum(b["processed_count"] for b in bodies) == 200
    assert sum(b["duplicate_count"] for b in bodies) == 7 * 200
    assert CostRecord.objects.filter(tenant_id="t-acme").count() == 200
    ids = {tuple(x["record_id"] for x in b["results"]) for b in bodies}
    assert len(ids) == 1  # every answer names the same record for each item
    rollup = CostDailyRollup.objects.get(tenant_id="t-acme")
    assert rollup.record_count == 200
    assert rollup.total_cost == sum(D(f"{i}.01") for i in range(200))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_in_different_orders_neither_deadlock_nor_double_count(frozen):
    """Four threads post the same 60 shared keys in different orders, each with 20 of its own
    (tagged, spread over hours): every key is created once, and every rollup equals the
    raw table."""
    from tests.costs.test_rollups import from_raw, from_rollups

    token = issue_jwt(tenant_id="t-acme", roles=["service"], sub="svc", ttl_seconds=86400)
    shared = items(60, prefix="shared", tags={"env": "prod"})
    for i, item in enumerate(shared):
        item["timestamp"] = f"2024-05-14T{i % 24:02d}:15:00Z"
    answers = []
    barrier = threading.Barrier(4)

    def worker(n):
        own = items(20, prefix=f"own{n}-", tags={"team": f"t{n}"})
        order = shared[n::4] + shared[: n % 4] + shared[n % 4 :][::-1]
        batch = list({item["idempotency_key"]: item for item in order}.values()) + own
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            answers.append(post(client, batch))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 4
    bodies = [a.json() for a in answers]
    assert sum(b["processed_count"] for b in bodies) == 60 + 4 * 20
    assert sum(b["failed_count"] for b in bodies) == 0
    assert CostRecord.objects.filter(tenant_id="t-acme").count() == 140
    assert from_rollups() == from_raw()
