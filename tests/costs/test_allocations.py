"""Allocation (SPEC 4.3): equal, weighted and usage-based splits that conserve the total to
the minor unit; sources by filter leave totals; amortization written day by day."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from costs import services
from costs.models import AmortizationSlice, CostAllocation, CostRecord
from receipts.models import Receipt
from tests.costs.conftest import BASE, NOW, record

pytestmark = pytest.mark.django_db

TARGETS3 = [
    {"attributed_to_type": "project", "attributed_to_id": "a"},
    {"attributed_to_type": "project", "attributed_to_id": "b"},
    {"attributed_to_type": "project", "attributed_to_id": "c"},
]


@pytest.fixture
def controller(client_for):
    return client_for("t-acme", ["financial_controller"])


def allocate(client, **body):
    return client.post(f"{BASE}/allocations", body, format="json")


def amounts(record_ids):
    by_id = {str(r.pk): r for r in CostRecord.objects.filter(pk__in=record_ids)}
    return [by_id[str(i)].cost_amount for i in record_ids]


def test_100_over_three_equal_targets_is_conserved_to_the_cent(controller):
    r = allocate(
        controller, rule="equal", cost_amount="100.00", resource_type="shared_db", targets=TARGETS3
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["total"] == 100
    assert amounts(body["record_ids"]) == [D("33.34"), D("33.33"), D("33.33")]
    parts = CostRecord.objects.filter(allocation_id=body["allocation_id"])
    assert {p.attributed_to_id for p in parts} == {"a", "b", "c"}
    assert all(p.kind == "allocation" and p.counted for p in parts)
    assert Receipt.objects.filter(pk=body["receipt_id"], gate_id="cost-tracking").exists()
    report = controller.get(f"{BASE}/reports?report_type=by_project").json()
    assert {r["attributed_to_id"]: r["total_cost"] for r in report["breakdown"]} == {
        "a": 33.34,
        "b": 33.33,
        "c": 33.33,
    }
    assert report["total_cost"] == 100


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1, 1, 1], ["33.34", "33.33", "33.33"]),
        ([2, 3, 5], ["20.00", "30.00", "50.00"]),
        ([1, 0, 2], ["33.33", "0.00", "66.67"]),
    ],
)
def test_weighted_splits_conserve_the_total(controller, weights, expected):
    targets = [{**t, "weight": w} for t, w in zip(TARGETS3, weights, strict=True)]
    body = allocate(
        controller, rule="weighted", cost_amount="100.00", resource_type="x", targets=targets
    ).json()
    assert amounts(body["record_ids"]) == [D(e) for e in expected]
    assert sum(amounts(body["record_ids"])) == D("100.00")


def test_awkward_amounts_in_other_currencies(controller):
    jpy = allocate(
        controller,
        rule="weighted",
        cost_amount="1000",
        currency="JPY",
        resource_type="x",
        targets=[{**t, "weight": w} for t, w in zip(TARGETS3, [2, 3, 5], strict=True)],
    ).json()
    assert amounts(jpy["record_ids"]) == [D(200), D(300), D(500)]
    bhd = allocate(
        controller,
        rule="equal",
        cost_amount="10.000",
        currency="BHD",
        resource_type="x",
        targets=TARGETS3,
    ).json()
    assert amounts(bhd["record_ids"]) == [D("3.334"), D("3.333"), D("3.333")]


def test_usage_based_splits_by_each_targets_usage(controller, frozen):
    for ident, qty in (("a", "1"), ("b", "3")):
        record(
            resource_type="api_calls",
            cost_amount="0",
            usage_quantity=qty,
            attributed_to_type="project",
            attributed_to_id=ident,
            timestamp="2024-05-10T00:00:00Z",
        )
    body = allocate(
        controller,
        rule="usage_based",
        cost_amount="10.00",
        resource_type="x",
        usage_resource_type="api_calls",
        targets=TARGETS3[:2],
    ).json()
    assert amounts(body["record_ids"]) == [D("2.50"), D("7.50")]
    none = allocate(
        controller,
        rule="usage_based",
        cost_amount="10.00",
        resource_type="x",
        usage_resource_type="nothing",
        targets=TARGETS3[:2],
    )
    assert none.status_code == 400


def test_source_filter_moves_records_out_of_totals(controller, frozen):
    record(resource_type="shared_db", cost_amount="60.00", timestamp="2024-05-10T00:00:00Z")
    record(resource_type="shared_db", cost_amount="40.00", timestamp="2024-05-11T00:00:00Z")
    record(resource_type="llm", cost_amount="5.00", timestamp="2024-05-11T00:00:00Z")
    before = controller.get(f"{BASE}/reports").json()["total_cost"]
    r = allocate(
        controller,
        rule="equal",
        source_filter={"resource_type": "shared_db", "start_time": "2024-05-01"},
        targets=TARGETS3,
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["total"] == 100
    sources = CostRecord.objects.filter(resource_type="shared_db", kind="usage")
    assert all(not s.counted and str(s.allocation_id) == body["allocation_id"] for s in sources)
    assert controller.get(f"{BASE}/reports").json()["total_cost"] == before == 105
    after = controller.get(f"{BASE}/reports?report_type=by_project").json()
    assert {r["attributed_to_id"]: r["total_cost"] for r in after["breakdown"]} == {
        "a": 33.34,
        "b": 33.33,
        "c": 33.33,
    }
    # The same sources cannot be allocated twice.
    again = allocate(
        controller,
        rule="equal",
        source_filter={"resource_type": "shared_db", "start_time": "2024-05-01"},
        targets=TARGETS3,
    )
    assert again.status_code == 400


def test_amortization_writes_each_day_on_that_day(controller, frozen):
    r = allocate(
        controller,
        rule="weighted",
        cost_amount="100.00",
        resource_type="license",
        targets=[{**TARGETS3[0], "weight": 1}, {**TARGETS3[1], "weight": 2}],
        amortize_from="2024-05-14",
        amortize_to="2024-05-17",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    alloc_id = body["allocation_id"]
    slices = AmortizationSlice.objects.filter(allocation_id=alloc_id)
    assert slices.count() == 6  # 3 days x 2 targets
    assert sum(s.amount for s in slices) == D("100.00")
    # Today (05-15) and yesterday are written at once; tomorrow is not.
    assert len(body["record_ids"]) == 4
    written = CostRecord.objects.filter(allocation_id=alloc_id)
    assert max(r.timestamp for r in written) <= NOW
    assert services.write_amortization_slices() == []  # nothing more is due today
    frozen.move_to(datetime(2024, 5, 16, 0, 30, tzinfo=UTC))
    assert len(services.write_amortization_slices()) == 2
    assert services.write_amortization_slices() == []  # safe to run twice
    total = sum(r.cost_amount for r in CostRecord.objects.filter(allocation_id=alloc_id))
    assert total == D("100.00")
    per_target = {
        t: sum(
            r.cost_amount
            for r in CostRecord.objects.filter(allocation_id=alloc_id, attributed_to_id=t)
        )
        for t in ("a", "b")
    }
    assert per_target == {"a": D("33.33"), "b": D("66.67")}
    days = sorted(
        {r.timestamp.date().isoformat() for r in CostRecord.objects.filter(allocation_id=alloc_id)}
    )
    assert days == ["2024-05-14", "2024-05-15", "2024-05-16"]


@pytest.mark.parametrize(
    "body",
    [
        {"rule": "equal", "resource_type": "x", "targets": TARGETS3},  # no amount nor filter
        {"rule": "equal", "cost_amount": 1, "targets": TARGETS3},  # no resource_type
        {"rule": "equal", "cost_amount": 1, "resource_type": "x", "targets": []},
        {"rule": "split", "cost_amount": 1, "resource_type": "x", "targets": TARGETS3},
        {"rule": "weighted", "cost_amount": 1, "resource_type": "x", "targets": TARGETS3},
        {
            "rule": "weighted",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": [{**t, "weight": 0} for t in TARGETS3],
        },
        {"rule": "usage_based", "cost_amount": 1, "resource_type": "x", "targets": TARGETS3},
        {"rule": "equal", "cost_amount": -1, "resource_type": "x", "targets": TARGETS3},
        {
            "rule": "equal",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": [TARGETS3[0], TARGETS3[0]],
        },
        {
            "rule": "equal",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": [{"attributed_to_type": "user"}],
        },
        {
            "rule": "equal",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": TARGETS3,
            "amortize_from": "2024-05-10",
        },
        {
            "rule": "equal",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": TARGETS3,
            "amortize_from": "2024-05-10",
            "amortize_to": "2024-05-10",
        },
        {"rule": "equal", "source_filter": {"resource_type": "none"}, "targets": TARGETS3},
        {
            "rule": "equal",
            "cost_amount": 1,
            "resource_type": "x",
            "targets": TARGETS3,
            "colour": "red",
        },
    ],
)
def test_invalid_allocations_are_400s_and_change_nothing(controller, body):
    r = allocate(controller, **body)
    assert r.status_code == 400, r.content
    assert CostAllocation.objects.count() == 0
    assert CostRecord.objects.count() == 0
