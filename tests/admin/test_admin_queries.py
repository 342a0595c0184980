"""Admin list pages: no N+1 queries, and pinned query counts on the large tables.

Every registered model's changelist is loaded with the demo data of one tenant, then of two:
the number of queries must not grow with the rows (an N+1 would), and must stay under a
pinned ceiling. The ledgers that grow to millions of rows get their own exact ceilings.
"""

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.conftest import PASSWORD

# Queries a changelist may make: session, user, memberships, the page's count(s) and rows,
# filters' lookups, and the related rows fetched in one go.
CEILING = 12

# The large tables (SPEC 8's ledgers and the hot state), with their pinned ceilings for a
# superuser. A change that adds a query per row, or a second full COUNT, shows up here.
LARGE_TABLES = {
    "receipts.Receipt": 5,
    "events.OutboxEvent": 5,
    "events.Delivery": 5,
    "quotas.QuotaUsage": 8,
    "costs.CostRecord": 5,
    "costs.CostDailyRollup": 5,
    "budgets.SpendEntry": 5,
    "budgets.Reservation": 5,
    "approvals.ApprovalRequest": 5,
    "ratelimits.RateLimitUsage": 6,
    "platform.AuditLogEntry": 7,
}


def _changelists() -> dict[str, str]:
    return {
        model._meta.label: reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        )
        for model in admin.site._registry
    }


def _count(client: Client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    return response.status_code, len(ctx.captured_queries)


def _more_rows(tenant_id: str, make_token) -> None:
    """Rows of the tables the demo leaves empty, through the services and the API."""
    import uuid
    from decimal import Decimal

    from django.utils import timezone
    from rest_framework.test import APIClient

    from approvals.services import request_approval
    from budgeting_site.platform.services import create_api_key

    for i in range(2):
        create_api_key(tenant_id=tenant_id, name=f"svc-{i}", roles=["service"], created_by="t")
        request_approval(
            tenant_id=tenant_id,
            kind="budget_overrun",
            requested_by=f"svc-{i}",
            requested_amount=Decimal("10"),
            budget_id=uuid.uuid4(),
            period_start=timezone.now(),
        )
        Client().post("/admin/login/", {"username": f"nobody-{i}", "password": "x"})
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {make_token(tenant_id, ['service', 'system_architect'])}"
    )
    for _ in range(2):
        held = api.post(
            "/budget/v1/budgets/check",
            {"resource_type": "demo", "estimated_cost": "0.01"},
            format="json",
        )
        assert held.status_code == 200, held.content
    policy = api.get("/budget/v1/rate-limits").json()["policies"][0]["policy_id"]
    for _ in range(2):
        granted = api.post(
            f"/budget/v1/rate-limits/{policy}/emergency-capacity",
            {"extra_requests": 5, "duration_seconds": 600, "reason": "test"},
            format="json",
        )
        assert granted.status_code in (200, 201), granted.content


@pytest.fixture
def superuser_client(make_user) -> Client:
    make_user("root", superuser=True)
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    return client


def test_no_admin_list_page_grows_its_queries_with_its_rows(superuser_client, make_token):
    urls = _changelists()
    call_command("seed_demo", tenant="demo-one", verbosity=0)
    _more_rows("demo-one", make_token)
    first = {label: _count(superuser_client, url) for label, url in urls.items()}
    call_command("seed_demo", tenant="demo-two", verbosity=0)
    _more_rows("demo-two", make_token)
    second = {label: _count(superuser_client, url) for label, url in urls.items()}

    broken = {label: status for label, (status, _) in second.items() if status != 200}
    assert not broken, f"changelists not answering 200: {broken}"
    growing = {
        label: (first[label][1], second[label][1])
        for label in urls
        if second[label][1] != first[label][1]
    }
    assert not growing, f"queries grow with rows (N+1?): {growing}"
    heavy = {label: n for label, (_, n) in second.items() if n > CEILING}
    assert not heavy, f"over {CEILING} queries: {heavy}"


def test_large_tables_list_pages_stay_within_their_pinned_counts(
    superuser_client, django_assert_max_num_queries
):
    call_command("seed_demo", tenant="demo-one", verbosity=0)
    urls = _changelists()
    for label, ceiling in LARGE_TABLES.items():
        assert label in urls, f"{label} is not in the admin"
        with django_assert_max_num_queries(ceiling):
            response = superuser_client.get(urls[label])
        assert response.status_code == 200, label


def test_scoped_staff_list_pages_cost_three_queries_more_at_most(make_user, superuser_client):
    # +1: the user's memberships (once per request); +2: Django's own user and group
    # permissions, which the sidebar reads for the admins that are not tenant-scoped (auth).
    call_command("seed_demo", tenant="demo-one", verbosity=0)
    make_user("auditor", {"demo-one": ["auditor", "tenant_admin", "financial_controller"]})
    staff = Client()
    assert staff.login(username="auditor", password=PASSWORD)
    for label, url in _changelists().items():
        status, staff_queries = _count(staff, url)
        if status != 200:
            continue  # a model no role of this user reads
        _, root_queries = _count(superuser_client, url)
        assert staff_queries <= root_queries + 3, (label, staff_queries, root_queries)
