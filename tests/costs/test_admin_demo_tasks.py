"""The operators' side: admin pages (reference tables through the services, read-only ledgers,
tenant scoping, the reverse action), dashboard providers, the demo seeder and the jobs."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from budgeting_site.celery import BEAT_SCHEDULE
from budgeting_site.platform import admin_dashboard, clock
from costs import selectors, tasks
from costs.demo import seed
from costs.models import CostAllocation, CostAnomaly, CostRecord, FxRate, UnitPrice
from receipts.models import Receipt
from tests.costs.conftest import NOW, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    user = get_user_model().objects.create(username="op", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def staff(username, tenant_id, roles):
    from budgeting_site.platform.services import set_membership

    user = get_user_model().objects.create(username=username, is_staff=True)
    set_membership(user=user, tenant_id=tenant_id, roles=roles)
    client = Client()
    client.force_login(user)
    return client


def test_operators_add_prices_and_rates_through_the_services(operator):
    r = operator.post(
        "/admin/costs/unitprice/add/",
        {
            "tenant_id": "",
            "resource_type": "gpu_hours",
            "usage_unit": "hour",
            "unit_price": "2.48",
            "currency": "USD",
            "effective_from_0": "2024-01-01",
            "effective_from_1": "00:00:00",
        },
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    assert UnitPrice.objects.get().unit_price == D("2.48")
    r = operator.post(
        "/admin/costs/fxrate/add/",
        {
            "tenant_id": "",
            "base_currency": "eur",
            "quote_currency": "USD",
            "rate": "1.08",
            "effective_from_0": "2024-01-01",
            "effective_from_1": "00:00:00",
        },
    )
    assert r.status_code == 302
    assert FxRate.objects.get().base_currency == "EUR"
    dup = operator.post(
        "/admin/costs/fxrate/add/",
        {
            "tenant_id": "",
            "base_currency": "EUR",
            "quote_currency": "USD",
            "rate": "1.09",
            "effective_from_0": "2024-01-01",
            "effective_from_1": "00:00:00",
        },
    )
    assert dup.status_code == 200  # the form shows the service's conflict
    assert FxRate.objects.count() == 1
    rate = FxRate.objects.get()
    assert operator.post(f"/admin/costs/fxrate/{rate.pk}/delete/").status_code == 403


def test_ledgers_are_read_only_and_scoped(frozen, operator):
    mine = record(cost_amount="1")
    theirs = record(tenant_id="t-globex", cost_amount="2")
    assert operator.get("/admin/costs/costrecord/").status_code == 200
    assert operator.get(f"/admin/costs/costrecord/{mine.pk}/change/").status_code == 200
    assert operator.get("/admin/costs/costrecord/add/").status_code == 403
    assert operator.post(f"/admin/costs/costrecord/{mine.pk}/delete/").status_code == 403
    for page in ("costanomaly", "costallocation", "amortizationslice", "costdailyrollup"):
        assert operator.get(f"/admin/costs/{page}/").status_code == 200
    auditor = staff("aud", "t-acme", ["auditor"])
    assert auditor.get(f"/admin/costs/costrecord/{mine.pk}/change/").status_code == 200
    assert auditor.get(f"/admin/costs/costrecord/{theirs.pk}/change/").status_code == 302
    assert auditor.get("/admin/costs/unitprice/").status_code == 403


def test_the_reverse_action_goes_through_the_service(frozen):
    target = record(cost_amount="3")
    other = record(tenant_id="t-globex", cost_amount="4")
    controller = staff("fc", "t-acme", ["financial_controller"])
    form = {"action": "reverse_selected", "_selected_action": [str(target.pk), str(other.pk)]}
    assert controller.post("/admin/costs/costrecord/", form).status_code == 302
    assert CostRecord.objects.get(pk=target.pk).reversed_by is not None
    assert CostRecord.objects.get(pk=other.pk).reversed_by is None
    auditor = staff("aud2", "t-acme", ["auditor"])
    again = record(cost_amount="5")
    auditor.post(
        "/admin/costs/costrecord/",
        {"action": "reverse_selected", "_selected_action": [str(again.pk)]},
    )
    assert CostRecord.objects.get(pk=again.pk).reversed_by is None


def test_dashboard_providers_read_the_rollups(frozen):
    record(
        cost_amount="1.50",
        timestamp="2024-05-14T10:00:00Z",
        attributed_to_type="project",
        attributed_to_id="p1",
    )
    record(cost_amount="2.00", timestamp="2024-05-15T10:00:00Z")
    record(tenant_id="t-globex", cost_amount="9.00")
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=1)
    rows = selectors.dashboard_cost_per_day(tenant_ids=["t-acme"], start=start, end=end)
    assert [(d.isoformat(), c, a) for d, c, a in rows] == [
        ("2024-05-14", "USD", D("1.5")),
        ("2024-05-15", "USD", D("2")),
    ]
    top = selectors.dashboard_top_spenders(tenant_ids=None, start=start, end=end, limit=5)
    assert ("tenant", "t-globex", "USD", D("9")) in top
    assert ("project", "p1", "USD", D("1.5")) in top
    assert admin_dashboard.providers()["cost_per_day"] == selectors.dashboard_cost_per_day


def test_demo_seeder_is_realistic_and_safe_to_run_again():
    with clock.override(lambda: datetime(2024, 5, 15, 12, tzinfo=UTC)):
        seed("demo")
        first = CostRecord.objects.filter(tenant_id="demo").count()
        seed("demo")
    assert first > 1000
    assert CostRecord.objects.filter(tenant_id="demo").count() == first
    assert CostAllocation.objects.filter(tenant_id="demo").count() == 1
    days = {r.timestamp.date() for r in CostRecord.objects.filter(tenant_id="demo", kind="usage")}
    assert len(days) == 60
    assert CostAnomaly.objects.filter(tenant_id="demo", dimension_id="proj-chat").exists()


def test_jobs_have_their_pinned_names_and_run_twice_safely(frozen):
    for name in (
        "costs.write_amortization_slices",
        "costs.refresh_rollups",
        "costs.detect_anomalies",
    ):
        assert BEAT_SCHEDULE[name]["task"] == name
    assert tasks.write_amortization_slices.name == "costs.write_amortization_slices"
    record(cost_amount="1")
    receipts = Receipt.objects.count()
    assert tasks.write_amortization_slices() == 0
    assert tasks.refresh_rollups() == tasks.refresh_rollups() == 3
    assert tasks.detect_anomalies() == tasks.detect_anomalies() == 0
    assert Receipt.objects.count() == receipts
