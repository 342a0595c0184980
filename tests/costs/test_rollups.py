"""Daily rollups stay equal to the raw table through every write, and the repair job rebuilds
a day that drifted."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from costs import services, tasks
from costs.models import CostDailyRollup, CostRecord
from tests.costs.conftest import ACTOR, record

pytestmark = pytest.mark.django_db


def from_raw():
    out = {}
    for r in CostRecord.objects.filter(counted=True):
        key = (r.tenant_id, r.timestamp.date(), r.resource_type, r.attributed_to_id, r.currency)
        cost, usage, n = out.get(key, (D(0), D(0), 0))
        out[key] = (cost + r.cost_amount, usage + (r.usage_quantity or 0), n + 1)
    return out


def from_rollups():
    out = {}
    for r in CostDailyRollup.objects.all():
        if not r.record_count:
            continue
        key = (r.tenant_id, r.day, r.resource_type, r.attributed_to_id, r.currency)
        cost, usage, n = out.get(key, (D(0), D(0), 0))
        out[key] = (cost + r.total_cost, usage + r.total_usage, n + r.record_count)
    return out


def test_rollups_follow_records_reversals_and_allocations(frozen):
    a = record(cost_amount="1.10", usage_quantity="2", timestamp="2024-05-01T10:00:00Z")
    record(cost_amount="2.20", timestamp="2024-05-01T23:59:59.999999Z")
    record(cost_amount="3.30", currency="EUR", timestamp="2024-05-02T00:00:00Z")
    record(cost_amount="4.40", resource_type="shared", timestamp="2024-05-03T00:00:00Z")
    services.reverse_record(tenant_id="t-acme", record_id=a.pk, reason="x", actor=ACTOR)
    services.create_allocation(
        tenant_id="t-acme",
        spec={
            "rule": "equal",
            "source_filter": {"resource_type": "shared"},
            "targets": [
                {"attributed_to_type": "project", "attributed_to_id": "p"},
                {"attributed_to_type": "project", "attributed_to_id": "q"},
            ],
        },
        actor=ACTOR,
    )
    assert from_rollups() == from_raw()


def test_refresh_rebuilds_a_day_that_drifted(frozen):
    record(cost_amount="5.00", timestamp="2024-05-15T01:00:00Z")
    record(cost_amount="7.00", timestamp="2024-05-14T01:00:00Z")
    CostDailyRollup.objects.filter(day=date(2024, 5, 15)).update(total_cost=D("999"))
    CostDailyRollup.objects.create(
        tenant_id="t-acme",
        day=date(2024, 5, 14),
        resource_type="ghost",
        attributed_to_type="tenant",
        attributed_to_id="t-acme",
        currency="USD",
        total_cost=D(1),
        record_count=1,
    )
    assert tasks.refresh_rollups() == 3
    assert from_rollups() == from_raw()
    assert services.refresh_rollups(now=datetime(2024, 5, 15, tzinfo=UTC)) == 3  # twice: same
    assert from_rollups() == from_raw()
