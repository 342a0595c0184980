"""Property tests of reports: for random records, every grouping adds up to total_cost exactly,
the rollup-based answer (daily, hourly and tag rollups, FX segments cut mid-day) equals the
raw-table answer, the total equals an independent per-record computation, and the CSV holds
the same numbers as the JSON."""

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgeting_site.platform import clock
from budgeting_site.platform.money import round_money
from budgeting_site.platform.renderers import dumps
from costs import services
from costs.api.views import report_csv
from costs.fx import FxTable
from costs.models import CostRecord, FxRate
from costs.selectors import REPORT_ATTRIBUTION, REPORT_TYPES, ReportRequest, build_report

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=20)
ACTOR = {"principal": "prop", "credential_id": "", "instance": "t"}
GROUPINGS = [
    [],
    ["service_name", "region"],
    ["attributed_to_type", "attributed_to_id"],
    ["tag:env"],
    ["resource_type", "day"],
    ["week"],
    ["tag:env", "month"],
    ["tag:team", "service_name", "day"],
    ["tag:env", "tag:team"],
]
#: No tag filter, one (the tag rollups), one on another key than a grouping's, two (raw).
TAG_FILTERS = [[], [("env", "prod")], [("team", "a")], [("env", "dev"), ("team", "b")]]

money = st.decimals(
    min_value=0,
    max_value=D("99999999.9999999999"),
    places=10,
    allow_nan=False,
    allow_infinity=False,
)
records = st.lists(
    st.fixed_dictionaries(
        {
            "cost_amount": st.one_of(money, st.sampled_from([D("0.01"), D("1"), D("0")])),
            "currency": st.sampled_from(["USD", "EUR", "JPY"]),
            "resource_type": st.sampled_from(["llm", "gpu", "storage"]),
            "service_name": st.sampled_from(["", "chat", "search"]),
            "region": st.sampled_from(["", "eu", "us"]),
            "attribution": st.sampled_from(
                [("tenant", None), ("project", "p1"), ("project", "p2"), ("user", "u1")]
            ),
            "env": st.sampled_from([None, "prod", "dev"]),
            "team": st.sampled_from([None, "a", "b"]),
            "seconds": st.integers(min_value=0, max_value=20 * 86400 - 1),
        }
    ),
    min_size=0,
    max_size=25,
)
instants = st.one_of(
    st.integers(min_value=0, max_value=20).map(lambda d: T0 + timedelta(days=d)),
    st.integers(min_value=0, max_value=20 * 24).map(lambda h: T0 + timedelta(hours=h)),
    st.integers(min_value=0, max_value=20 * 86400).map(lambda s: T0 + timedelta(seconds=s)),
)


def ensure_rates():
    if FxRate.objects.exists():
        return
    # A rate change in the middle of a day: that day cannot be read from rollups alone.
    for base, quote, rate, at in [
        ("EUR", "USD", D("1.0831"), T0 - timedelta(days=30)),
        ("EUR", "USD", D("1.0902"), T0 + timedelta(days=7, hours=13, minutes=7)),
        ("USD", "JPY", D("151.37"), T0 - timedelta(days=30)),
        ("USD", "JPY", D("149.9"), T0 + timedelta(days=12)),
        ("EUR", "JPY", D("163.25"), T0 - timedelta(days=30)),
    ]:
        services.set_fx_rate(base_currency=base, quote_currency=quote, rate=rate, effective_from=at)


def load(tenant, recs):
    items = []
    for i, r in enumerate(recs):
        kind, ident = r["attribution"]
        item = {
            "idempotency_key": f"k{i}",
            "resource_type": r["resource_type"],
            "cost_amount": str(r["cost_amount"]),
            "currency": r["currency"],
            "service_name": r["service_name"],
            "region": r["region"],
            "attributed_to_type": kind,
            "timestamp": (T0 + timedelta(seconds=r["seconds"])).isoformat(),
            "usage_quantity": "1.5",
        }
        if ident:
            item["attributed_to_id"] = ident
        tags = {k: r[k] for k in ("env", "team") if r[k]}
        if tags:
            item["tags"] = tags
        items.append(item)
    if items:
        with clock.override(lambda: NOW):
            out = services.record_batch(tenant_id=tenant, items=items, actor=ACTOR)
        assert out.failed_count == 0


def independent_total(tenant, start, end, currency, report_type, tags):
    """Record by record: (exact total, whether any amount was converted)."""
    fx = FxTable(tenant)
    total = D(0)
    converted = False
    matching = CostRecord.objects.filter(tenant_id=tenant, timestamp__gte=start, timestamp__lt=end)
    if report_type in REPORT_ATTRIBUTION:
        matching = matching.filter(attributed_to_type=REPORT_ATTRIBUTION[report_type])
    for rec in matching:
        if any(rec.tags.get(k) != v for k, v in tags):
            continue
        total += rec.cost_amount * fx.rate(rec.currency, currency, rec.timestamp)
        converted = converted or rec.currency != currency
    return total, converted


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    recs=records,
    a=instants,
    b=instants,
    currency=st.sampled_from(["USD", "EUR", "JPY"]),
    report_type=st.sampled_from(sorted(REPORT_TYPES)),
    tags=st.sampled_from(TAG_FILTERS),
)
def test_breakdowns_add_up_and_rollups_equal_raw(recs, a, b, currency, report_type, tags):
    ensure_rates()
    tenant = f"t-prop-{uuid.uuid4().hex[:12]}"
    load(tenant, recs)
    start, end = min(a, b), max(a, b)
    if start == end:
        end = start + timedelta(days=1)
    expected, converted = independent_total(tenant, start, end, currency, report_type, tags)
    expected = round_money(expected, currency) if converted else expected

    for group_by in [None, *GROUPINGS]:
        req = ReportRequest(
            tenant_id=tenant,
            report_type=report_type,
            currency=currency,
            start=start,
            end=end,
            group_by=group_by,
            tag_key="env",
            tags=tags,
        )
        fast = build_report(req, use_rollups=True)
        slow = build_report(req, use_rollups=False)
        for report in (fast, slow):
            parts = sum((D(str(r["total_cost"])) for r in report["breakdown"]), D(0))
            assert parts == report["total_cost"]
        strip = lambda r: {k: v for k, v in r.items() if k != "report_id"}  # noqa: E731
        assert strip(fast) == strip(slow)
        if not (converted and report_type == "detailed" and group_by is None):
            # detailed rows round each record; the others round group sums: both sum exactly
            assert fast["total_cost"] == expected

    # CSV and JSON of the same report carry the same numbers.
    req = ReportRequest(
        tenant_id=tenant,
        report_type=report_type,
        currency=currency,
        start=start,
        end=end,
        group_by=["tag:env", "day"],
        tag_key="env",
    )
    report = build_report(req)
    as_json = json.loads(dumps(report), parse_float=D)
    table = list(csv.DictReader(io.StringIO(report_csv(report).content.decode())))
    assert len(table) == len(as_json["breakdown"])
    for row, js in zip(table, as_json["breakdown"], strict=True):
        assert D(row["total_cost"]) == D(str(js["total_cost"]))
        assert D(row["usage_quantity"]) == D(str(js["usage_quantity"]))
        assert int(row["record_count"]) == js["record_count"]
        assert row["day"] == js["day"]
        assert row["tag:env"] == (js["tag:env"] or "")
