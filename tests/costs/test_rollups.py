"""The daily, hourly and tag rollups stay equal to the raw table through every write, and the
repair job rebuilds a day that drifted in any of them."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from costs import rollups, services, tasks
from costs.models import (
    CostDailyRollup,
    CostHourlyRollup,
    CostRecord,
    CostTagRollup,
    CostTagSetDailyRollup,
    CostTagSetHourlyRollup,
)
from tests.costs.conftest import ACTOR, record

pytestmark = pytest.mark.django_db

DIMS = ("resource_type", "service_name", "region", "attributed_to_type", "attributed_to_id")


def from_raw():
    """Every rollup recomputed record by record: {(kind, key): (cost, usage, count)}."""
    out = {}

    def add(key, r):
        cost, usage, n = out.get(key, (D(0), D(0), 0))
        out[key] = (cost + r.cost_amount, usage + (r.usage_quantity or 0), n + 1)

    for r in CostRecord.objects.filter(counted=True):
        ts = r.timestamp.astimezone(UTC)
        dims = (*(getattr(r, d) for d in DIMS), r.currency)
        add(("daily", r.tenant_id, ts.date(), *dims), r)
        add(("hourly", r.tenant_id, ts.replace(minute=0, second=0, microsecond=0), *dims), r)
        for key, value in r.tags.items():
            add(("tag", r.tenant_id, key, ts.date(), value, *dims), r)
        tag_set = tuple(sorted(r.tags.items()))
        add(("tag_sets", r.tenant_id, ts.date(), tag_set, r.currency), r)
        hour = ts.replace(minute=0, second=0, microsecond=0)
        add(("tag_sets_hourly", r.tenant_id, hour, tag_set, r.currency), r)
    return out


def from_rollups():
    out = {}
    tables = [
        ("daily", CostDailyRollup, ("tenant_id", "day")),
        ("hourly", CostHourlyRollup, ("tenant_id", "hour")),
        ("tag", CostTagRollup, ("tenant_id", "tag_key", "day", "tag_value")),
    ]
    for kind, model, head in tables:
        for r in model.objects.all():
            if r.record_count:
                key = (kind, *(getattr(r, f) for f in (*head, *DIMS, "currency")))
                out[key] = (r.total_cost, r.total_usage, r.record_count)
    for kind, model, period in (
        ("tag_sets", CostTagSetDailyRollup, "day"),
        ("tag_sets_hourly", CostTagSetHourlyRollup, "hour"),
    ):
        for r in model.objects.all():
            if r.record_count:
                assert r.tag_hash == rollups.tag_set_hash(rollups.tag_set_text(r.tags))
                key = (kind, r.tenant_id, getattr(r, period), tuple(sorted(r.tags.items())))
                out[(*key, r.currency)] = (r.total_cost, r.total_usage, r.record_count)
    return out


def test_rollups_follow_records_batches_reversals_and_allocations(frozen):
    a = record(
        cost_amount="1.10",
        usage_quantity="2",
        timestamp="2024-05-01T10:00:00Z",
        tags={"env": "prod", "team": "a"},
    )
    record(cost_amount="2.20", timestamp="2024-05-01T23:59:59.999999Z", tags={"env": "dev"})
    record(cost_amount="3.30", currency="EUR", timestamp="2024-05-02T00:00:00Z")
    record(cost_amount="4.40", resource_type="shared", timestamp="2024-05-03T00:00:00Z")
    services.record_batch(
        tenant_id="t-acme",
        items=[
            {
                "idempotency_key": f"b{i}",
                "resource_type": "llm",
                "cost_amount": f"0.{i}1",
                "service_name": "chat",
                "tags": {"env": "prod" if i % 2 else "dev", "ünï": "ç"},
                "timestamp": f"2024-05-0{1 + i % 3}T1{i}:30:00Z",
            }
            for i in range(6)
        ],
        actor=ACTOR,
    )
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
    assert CostHourlyRollup.objects.filter(record_count__gt=0).exists()
    assert CostTagRollup.objects.filter(tag_key="ünï", tag_value="ç").exists()
    assert from_rollups() == from_raw()


def test_a_batch_adds_only_the_records_it_inserted(frozen):
    """Keys used by an earlier batch, a key repeated in the batch and a failing item add
    nothing (on PostgreSQL the rollups are summed from the batch's staging table, which must
    then hold just the inserted rows)."""

    def item(key, cost, hour, **extra):
        return {
            "idempotency_key": key,
            "resource_type": "llm",
            "cost_amount": cost,
            "tags": {"env": "prod"},
            "timestamp": f"2024-05-01T{hour:02d}:15:00Z",
            **extra,
        }

    first = services.record_batch(
        tenant_id="t-acme", items=[item("k1", "1.00", 1), item("k2", "2.00", 2)], actor=ACTOR
    )
    assert first.processed_count == 2
    again = services.record_batch(
        tenant_id="t-acme",
        items=[
            item("k2", "2.00", 2),
            item("k3", "3.00", 3),
            item("k3", "3.00", 3),
            item("k4", "-1", 4),
            item("k5", "5.00", 5, region="eu"),
        ],
        actor=ACTOR,
    )
    assert (again.processed_count, again.duplicate_count, again.failed_count) == (2, 2, 1)
    assert from_rollups() == from_raw()
    daily = CostDailyRollup.objects.get(tenant_id="t-acme", region="")
    assert (daily.total_cost, daily.record_count) == (D("6.00"), 3)


def test_refresh_rebuilds_a_day_that_drifted_in_every_rollup(frozen):
    record(cost_amount="5.00", timestamp="2024-05-15T01:00:00Z", tags={"env": "prod"})
    record(cost_amount="7.00", timestamp="2024-05-14T01:00:00Z", tags={"env": "dev"})
    expected = from_raw()
    CostDailyRollup.objects.filter(day=date(2024, 5, 15)).update(total_cost=D("999"))
    CostHourlyRollup.objects.filter(hour__date=date(2024, 5, 14)).update(record_count=9)
    CostTagRollup.objects.filter(tag_value="prod").delete()
    ghost = {
        "tenant_id": "t-acme",
        "resource_type": "ghost",
        "attributed_to_type": "tenant",
        "attributed_to_id": "t-acme",
        "currency": "USD",
        "total_cost": D(1),
        "record_count": 1,
    }
    CostDailyRollup.objects.create(**ghost, day=date(2024, 5, 14))
    CostHourlyRollup.objects.create(**ghost, hour=datetime(2024, 5, 13, 7, tzinfo=UTC))
    CostTagRollup.objects.create(**ghost, day=date(2024, 5, 14), tag_key="k", tag_value="v")
    CostTagSetDailyRollup.objects.filter(day=date(2024, 5, 15)).update(total_usage=D("3"))
    CostTagSetHourlyRollup.objects.filter(hour__date=date(2024, 5, 14)).delete()
    ghost_set = {"tenant_id": "t-acme", "currency": "USD", "total_cost": D(2), "record_count": 2}
    tags = {"k": "v"}
    digest = rollups.tag_set_hash(rollups.tag_set_text(tags))
    CostTagSetDailyRollup.objects.create(
        **ghost_set, day=date(2024, 5, 14), tags=tags, tag_hash=digest
    )
    CostTagSetHourlyRollup.objects.create(
        **ghost_set, hour=datetime(2024, 5, 15, 3, tzinfo=UTC), tags=tags, tag_hash=digest
    )
    assert from_rollups() != expected
    assert tasks.refresh_rollups() == 3
    assert from_rollups() == expected
    assert rollups.refresh_rollups(now=datetime(2024, 5, 15, tzinfo=UTC)) == 3  # twice: same
    assert from_rollups() == expected
    # Every day of a tenant, when no days are given.
    CostTagRollup.objects.all().delete()
    assert rollups.repair_rollups(tenant_id="t-acme") == 2
    assert from_rollups() == expected


@pytest.mark.parametrize(
    ("window", "group_by", "tags", "reads"),
    [
        # Whole days: the daily rollup only.
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["region"], [], (1, 0)),
        # 13:37 to 13:37: whole days, then the whole hours of both partial days from the
        # hourly rollup, and only the two sub-hour edges from the raw table.
        (("2024-05-01T13:37:00Z", "2024-05-03T13:37:00Z"), ["day"], [], (3, 2)),
        # Within one day, on whole hours: the hourly rollup only.
        (("2024-05-02T09:00:00Z", "2024-05-02T15:00:00Z"), [], [], (1, 0)),
        # Tags and no other dimension, any number of keys: the daily tag sets.
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["tag:env", "day"], [], (1, 0)),
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["tag:env"], [("env", "dev")], (1, 0)),
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["tag:env"], [("team", "a")], (1, 0)),
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["tag:env", "tag:team"], [], (1, 0)),
        # ... and a partial day: its whole hours from the hourly tag sets, the sub-hour edge raw.
        (("2024-05-01T13:37:00Z", "2024-05-04T00:00:00Z"), ["tag:env"], [], (2, 1)),
        # One tag key with another dimension: the tag rollup (and the daily one for records
        # without the key); partial days from the raw table.
        (
            ("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"),
            ["service_name"],
            [("env", "prod")],
            (1, 0),
        ),
        (("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"), ["tag:env", "region"], [], (1, 0)),
        (("2024-05-01T13:37:00Z", "2024-05-04T00:00:00Z"), ["tag:env", "region"], [], (1, 1)),
        # Two tag keys with another dimension: the raw table.
        (
            ("2024-05-01T00:00:00Z", "2024-05-04T00:00:00Z"),
            ["tag:env", "region"],
            [("team", "a")],
            (0, 1),
        ),
    ],
)
def test_each_range_is_read_from_the_rollup_that_can_answer_it(
    frozen, window, group_by, tags, reads
):
    from costs.reporting import CostQuery, aggregate

    for i in range(40):
        record(
            cost_amount=f"{i}.{i:02d}",
            usage_quantity="1",
            service_name=("chat", "search")[i % 2],
            region=("eu", "us", "")[i % 3],
            tags={"env": ("prod", "dev")[i % 2], "team": "ab"[i % 3 % 2]} if i % 5 else {},
            timestamp=f"2024-05-0{1 + i % 3}T{i % 24:02d}:{(7 * i) % 60:02d}:00Z",
        )
    start, end = (datetime.fromisoformat(t) for t in window)
    query = CostQuery(
        tenant_id="t-acme", currency="USD", start=start, end=end, group_by=group_by, tags=tags
    )
    fast = aggregate(query)
    assert (fast.rollup_ranges, fast.raw_ranges) == reads
    slow = aggregate(query, use_rollups=False)
    assert fast.groups == slow.groups
    assert fast.record_count > 0


def test_a_tag_set_has_one_row_whichever_path_wrote_it(frozen):
    """The single-record path hashes a tag set in Python, the batch path in SQL (PostgreSQL):
    the canonical texts agree byte for byte, escapes, key order and non-ASCII included."""
    tags = {
        "b": 'quote " and \\ backslash',
        "a": "line\nbreak\ttab\x01\x1f\x7f",
        "ab": "é 😀 \u2028",
        "é": "",
        "Z": "upper",
    }
    record(cost_amount="1.00", timestamp="2024-05-01T10:00:00Z", tags=tags)
    services.record_batch(
        tenant_id="t-acme",
        items=[
            {
                "idempotency_key": "tricky",
                "resource_type": "llm",
                "cost_amount": "2.00",
                "tags": dict(reversed(tags.items())),
                "timestamp": "2024-05-01T10:30:00Z",
            }
        ],
        actor=ACTOR,
    )
    for model in (CostTagSetDailyRollup, CostTagSetHourlyRollup):
        row = model.objects.get()
        assert (row.total_cost, row.record_count, row.tags) == (D("3.00"), 2, tags)
        assert row.tag_hash == rollups.tag_set_hash(rollups.tag_set_text(tags))
    assert from_rollups() == from_raw()
