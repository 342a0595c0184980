"""The reconciliation job, the admin (read-only, "renew now"), and the demo seeder."""

import json
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client
from prometheus_client import REGISTRY

from quotas import demo, tasks
from quotas.models import Quota, QuotaUsage
from tests.quotas.conftest import alerts, allocate, consume

pytestmark = pytest.mark.django_db


def drift_metric() -> float:
    return REGISTRY.get_sample_value("reconciliation_drift", {"ledger": "quota_usage"})


def test_reconcile_finds_no_drift_when_the_ledger_matches(admin, svc):
    with time_machine.travel("2025-03-10", tick=False):
        allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
        consume(svc, 3)
        consume(svc, "4.25")

        assert tasks.reconcile() == {"checked": 1, "drifted": 0}

    assert drift_metric() == 0
    assert alerts("reconciliation_drift") == []


def test_reconcile_reports_drift_as_a_metric_and_one_alert_without_rewriting(admin, svc):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
        consume(svc, 10)
        Quota.objects.filter(pk=created["quota_id"]).update(used_amount=F("used_amount") + 2)

        tasks.reconcile()
        tasks.reconcile()

    assert drift_metric() == 2.0
    [alert] = alerts("reconciliation_drift")
    assert alert.resource_id == created["quota_id"]
    assert alert.occurrences == 2
    assert Decimal(str(alert.details["drift"])) == 2
    assert Quota.objects.get().used_amount == 12  # left for a human to look at


@pytest.fixture
def staff():
    user = get_user_model().objects.create(username="ops", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_quotas_and_usage_read_only(admin, svc, staff):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
        consume(svc, 1)
    usage = QuotaUsage.objects.get()

    assert staff.get("/admin/quotas/quota/").status_code == 200
    assert staff.get("/admin/quotas/quotausage/").status_code == 200
    assert staff.get(f"/admin/quotas/quota/{created['quota_id']}/change/").status_code == 200
    assert staff.get(f"/admin/quotas/quotausage/{usage.pk}/change/").status_code == 200
    assert staff.get("/admin/quotas/quota/add/").status_code == 403
    assert staff.post(f"/admin/quotas/quotausage/{usage.pk}/delete/").status_code == 403
    assert QuotaUsage.objects.count() == 1


def test_admin_renew_now_calls_the_renewal_service_once(admin, staff):
    with time_machine.travel("2025-03-01", tick=False):
        created = allocate(
            admin, period_start="2025-03-01", period_end="2025-03-31", auto_renew=False
        )
    form = {"action": "renew_now", "_selected_action": [created["quota_id"]]}

    first = staff.post("/admin/quotas/quota/", form, follow=True)
    second = staff.post("/admin/quotas/quota/", form, follow=True)

    assert first.status_code == second.status_code == 200
    successor = Quota.objects.get(renewed_from=created["quota_id"])
    assert successor.period_start.isoformat() == "2025-03-31T00:00:00+00:00"
    assert Quota.objects.count() == 2
    assert "already renewed" in second.content.decode()


def _staff(username: str, tenant_id: str, roles: list[str]) -> Client:
    from budgeting_site.platform.services import set_membership

    user = get_user_model().objects.create(username=username, is_staff=True)
    set_membership(user=user, tenant_id=tenant_id, roles=roles)
    client = Client()
    client.force_login(user)
    return client


def test_admin_is_scoped_to_the_staff_users_tenants(admin, client_for):
    with time_machine.travel("2025-03-01", tick=False):
        ours = allocate(admin, period_start="2025-03-01", period_end="2025-03-31")
        theirs = allocate(
            client_for("t-globex", ["tenant_admin"]),
            period_start="2025-03-01",
            period_end="2025-03-31",
        )
    viewer = _staff("viewer", "t-acme", ["tenant_user"])
    outsider = _staff("outsider", "t-acme", ["auditor"])

    listing = viewer.get("/admin/quotas/quota/")

    assert listing.status_code == 200
    assert ours["quota_id"] in listing.content.decode()
    assert theirs["quota_id"] not in listing.content.decode()
    assert viewer.get(f"/admin/quotas/quota/{theirs['quota_id']}/change/").status_code == 302
    assert outsider.get("/admin/quotas/quota/").status_code == 403
    # A tenant_user may look but not renew.
    form = {"action": "renew_now", "_selected_action": [ours["quota_id"]]}
    viewer.post("/admin/quotas/quota/", form, follow=True)
    assert Quota.objects.count() == 2


def test_a_tenant_admin_renews_only_its_own_tenants_quotas(admin, client_for):
    with time_machine.travel("2025-03-01", tick=False):
        ours = allocate(admin, period_start="2025-03-01", period_end="2025-03-31")
        theirs = allocate(
            client_for("t-globex", ["tenant_admin"]),
            period_start="2025-03-01",
            period_end="2025-03-31",
        )
    ops = _staff("acme-ops", "t-acme", ["tenant_admin"])

    ops.post(
        "/admin/quotas/quota/",
        {"action": "renew_now", "_selected_action": [ours["quota_id"], theirs["quota_id"]]},
        follow=True,
    )

    successor = Quota.objects.get(renewed_from=ours["quota_id"])
    assert not Quota.objects.filter(renewed_from=theirs["quota_id"]).exists()
    from receipts.models import Receipt

    renewal = [
        json.loads(r.canonical)
        for r in Receipt.objects.filter(gate_id="quota-management")
        if json.loads(r.canonical)["inputs"].get("operation") == "renew"
    ]
    assert [r["result"]["quota_id"] for r in renewal] == [str(successor.pk)]
    assert renewal[0]["actor"]["principal"] == "user:acme-ops"


def test_demo_seeder_runs_twice_without_duplicating(admin):
    demo.seed("demo")
    count = Quota.objects.filter(tenant_id="demo").count()
    demo.seed("demo")

    assert count == 6
    assert Quota.objects.filter(tenant_id="demo").count() == 6
    assert QuotaUsage.objects.filter(tenant_id="demo").count() == 4
    gpu = Quota.objects.filter(tenant_id="demo", resource_type="gpu_hours")
    assert sum(q.allocated_amount for q in gpu) == 1000
