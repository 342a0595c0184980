"""Reversal (SPEC 4.1): a new record cancels the original, which is kept and marked."""

import uuid
from decimal import Decimal as D

import pytest

from costs.models import CostDailyRollup, CostRecord
from receipts.models import Receipt
from tests.costs.conftest import BASE, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def controller(client_for):
    return client_for("t-acme", ["financial_controller"])


def reverse(client, record_id, reason="duplicate charge"):
    return client.post(f"{BASE}/{record_id}/reverse", {"reason": reason}, format="json")


def test_reversal_cancels_the_original_and_keeps_it(controller, frozen):
    original = record(cost_amount="4.50", timestamp="2024-05-10T08:00:00Z")
    other = record(cost_amount="1.00")
    r = reverse(controller, original.pk)
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["cost_amount"] == -4.5
    assert body["reverses"] == str(original.pk)
    assert body["status"] == "reversal"
    kept = CostRecord.objects.get(pk=original.pk)
    assert kept.cost_amount == D("4.50")
    assert str(kept.reversed_by) == body["record_id"]
    assert kept.counted is False
    assert kept.reversal_reason == "duplicate charge"
    assert Receipt.objects.filter(pk=body["receipt_id"], gate_id="cost-tracking").exists()
    day = CostDailyRollup.objects.get(day="2024-05-10")
    assert (day.total_cost, day.record_count) == (D(0), 0)
    totals = controller.get(f"{BASE}/records").json()
    assert totals["aggregated"]["total_cost"] == 1
    assert totals["aggregated"]["record_count"] == 1
    assert totals["pagination"]["total_count"] == 3  # the list shows all, marked
    assert other.counted


def test_reversing_twice_or_reversing_a_reversal_is_a_409(controller, frozen):
    original = record()
    first = reverse(controller, original.pk).json()
    again = reverse(controller, original.pk)
    assert again.status_code == 409
    assert reverse(controller, first["record_id"]).status_code == 409
    assert CostRecord.objects.count() == 2


def test_reverse_of_an_unknown_or_foreign_record_is_a_404(controller, frozen):
    foreign = record(tenant_id="t-globex")
    assert reverse(controller, foreign.pk).status_code == 404
    assert reverse(controller, uuid.uuid4()).status_code == 404
    assert CostRecord.objects.get(pk=foreign.pk).reversed_by is None


def test_reverse_validates_its_input(controller, frozen):
    original = record()
    assert (
        controller.post(f"{BASE}/not-a-uuid/reverse", {"reason": "x"}, format="json").status_code
        == 400
    )
    assert controller.post(f"{BASE}/{original.pk}/reverse", {}, format="json").status_code == 400
    assert (
        controller.post(
            f"{BASE}/{original.pk}/reverse", {"reason": "x", "extra": 1}, format="json"
        ).status_code
        == 400
    )
    assert CostRecord.objects.count() == 1
