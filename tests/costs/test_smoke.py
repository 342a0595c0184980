from decimal import Decimal

import pytest

from costs.models import CostDailyRollup, CostRecord
from receipts.models import Receipt
from tests.costs.conftest import BASE

pytestmark = pytest.mark.django_db


def test_record_then_read(svc, frozen):
    r = svc.post(f"{BASE}/record", {"resource_type": "llm", "cost_amount": "1.25"}, format="json")
    assert r.status_code == 202, r.content
    body = r.json()
    rec = CostRecord.objects.get(pk=body["record_id"])
    assert rec.cost_amount == Decimal("1.25")
    assert Receipt.objects.filter(pk=body["receipt_id"]).exists()
    assert CostDailyRollup.objects.get().total_cost == Decimal("1.25")
    r = svc.get(f"{BASE}/records")
    assert r.status_code == 200, r.content
    print(r.json())
    r = svc.get(f"{BASE}/reports?report_type=by_resource")
    assert r.status_code == 200, r.content
    print(r.json())
