"""The admin dashboard page: its registry, scoping, and what it renders."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client

from budgeting_site.platform import admin_dashboard
from tests.admin.conftest import PASSWORD

NOW = datetime(2025, 3, 15, 10, 30, tzinfo=UTC)
URL = "/admin/dashboard/"


def _client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _chart(response, element_id: str) -> dict:
    html = response.content.decode()
    start = html.index(f'id="{element_id}"')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def _panels(response) -> dict:
    return {p["key"]: p for p in response.context["panels"]}


def test_anonymous_is_sent_to_the_admin_sign_in(db):
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@time_machine.travel(NOW, tick=False)
def test_superuser_sees_every_panel_drawn_from_the_providers(make_user, fake_providers, calls):
    response = _client(make_user("root", superuser=True)).get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert "cdn" not in html.lower()
    panels = _panels(response)
    assert {k: p["state"] for k, p in panels.items()} == dict.fromkeys(admin_dashboard.PANELS, "ok")

    cost = _chart(response, "chart-cost_per_day")
    assert len(cost["labels"]) == 30
    assert cost["labels"][0] == "2025-02-14"
    assert cost["labels"][-1] == "2025-03-15"
    by_currency = {d["label"]: d["data"] for d in cost["datasets"]}
    assert by_currency["USD"][-1] == "12.50"
    assert by_currency["USD"][-2] == "7.25"
    assert by_currency["USD"][0] == "3.00"
    assert sum(Decimal(v) for v in by_currency["USD"]) == Decimal("22.75")
    assert by_currency["EUR"][-1] == "1.00"

    projects = _chart(response, "chart-top_spenders-project")
    assert projects["labels"] == ["p-search", "p-chat"]
    assert projects["datasets"][0]["data"] == ["60.00", "40.00"]

    budgets = _chart(response, "chart-budget_utilization")
    assert budgets["labels"] == ["Search · t-acme", "Chat · t-acme"]
    assert budgets["datasets"][0]["data"] == ["80.0", "20.0"]  # (spent + reserved) / amount
    assert budgets["datasets"][1]["data"] == ["130.0", "40.0"]  # forecast / amount

    denials = _chart(response, "chart-ratelimit_denials")
    assert len(denials["labels"]) == 24
    assert denials["datasets"][0]["data"][-2:] == [4, 2]
    assert sum(denials["datasets"][0]["data"]) == 6

    alerts = _chart(response, "chart-open_alerts")
    assert alerts["labels"] == ["critical", "warning", "info"]
    assert alerts["datasets"][0]["data"] == [1, 3, 0]

    # a superuser's view spans every tenant; windows are half-open and end now
    kwargs = dict(calls)
    assert kwargs["cost_per_day"]["tenant_ids"] is None
    assert kwargs["cost_per_day"]["start"] == datetime(2025, 2, 14, tzinfo=UTC)
    assert kwargs["cost_per_day"]["end"] == datetime(2025, 3, 16, tzinfo=UTC)
    assert kwargs["ratelimit_denials"]["end"] == datetime(2025, 3, 15, 11, tzinfo=UTC)
    assert kwargs["ratelimit_denials"]["start"] == datetime(2025, 3, 14, 11, tzinfo=UTC)
    assert kwargs["top_spenders"]["limit"] == admin_dashboard.TOP_LIMIT
    assert kwargs["top_spenders"]["start"] == datetime(2025, 2, 14, tzinfo=UTC)
    assert kwargs["top_spenders"]["end"] == datetime(2025, 3, 16, tzinfo=UTC)
    assert kwargs["open_alerts"]["start"] == kwargs["open_alerts"]["end"] == NOW


@time_machine.travel(NOW, tick=False)
def test_staff_panels_are_scoped_to_the_tenants_where_their_roles_read_them(
    make_user, fake_providers, calls
):
    user = make_user(
        "fin",
        {"t-acme": ["financial_controller"], "t-globex": ["system_architect"]},
    )
    response = _client(user).get(URL)

    assert response.status_code == 200
    kwargs = dict(calls)
    assert kwargs["cost_per_day"]["tenant_ids"] == ["t-acme"]
    assert kwargs["budget_utilization"]["tenant_ids"] == ["t-acme"]
    assert kwargs["open_alerts"]["tenant_ids"] == ["t-acme"]
    assert kwargs["ratelimit_denials"]["tenant_ids"] == ["t-globex"]


@time_machine.travel(NOW, tick=False)
def test_a_panel_no_role_reads_is_not_computed(make_user, fake_providers, calls):
    user = make_user("arch", {"t-globex": ["system_architect"]})
    response = _client(user).get(URL)

    panels = _panels(response)
    assert panels["ratelimit_denials"]["state"] == "ok"
    assert panels["cost_per_day"]["state"] == "forbidden"
    assert [name for name, _ in calls] == ["ratelimit_denials"]
    assert "Your roles do not include reading these figures" in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_the_tenant_picker_narrows_and_ignores_foreign_tenants(make_user, fake_providers, calls):
    user = make_user("fin", {"t-acme": ["financial_controller"], "t-b": ["financial_controller"]})
    client = _client(user)

    client.get(URL, {"tenant": "t-b"})
    assert dict(calls)["cost_per_day"]["tenant_ids"] == ["t-b"]
    calls.clear()
    response = client.get(URL, {"tenant": "t-globex"})
    assert dict(calls)["cost_per_day"]["tenant_ids"] == ["t-acme", "t-b"]
    assert response.context["selected_tenant"] == ""


@time_machine.travel(NOW, tick=False)
def test_a_failing_provider_leaves_only_its_panel_unavailable(make_user, fake_providers):
    def broken(**kw):
        raise RuntimeError("selector bug")

    admin_dashboard.register("open_alerts", broken)
    response = _client(make_user("root", superuser=True)).get(URL)

    assert response.status_code == 200
    panels = _panels(response)
    assert panels["open_alerts"]["state"] == "unavailable"
    assert panels["cost_per_day"]["state"] == "ok"


def test_missing_providers_and_empty_data_render_plain_messages(make_user, db):
    saved = admin_dashboard.providers()
    try:
        for key in admin_dashboard.PANELS:
            admin_dashboard.unregister(key)
        admin_dashboard.register("open_alerts", lambda **kw: [])
        response = _client(make_user("root", superuser=True)).get(URL)
    finally:
        admin_dashboard.unregister("open_alerts")
        for key, fn in saved.items():
            admin_dashboard.register(key, fn)

    assert response.status_code == 200
    panels = _panels(response)
    assert panels["cost_per_day"]["state"] == "missing"
    assert panels["open_alerts"]["state"] == "ok"
    html = response.content.decode()
    assert "No open alert." in html
    assert "No data source is installed for this panel." in html


def test_register_refuses_an_unknown_panel():
    with pytest.raises(ValueError):
        admin_dashboard.register("pie_of_the_day", lambda **kw: [])


def test_admin_index_and_header_link_to_the_dashboard(make_user):
    response = _client(make_user("root", superuser=True)).get("/admin/")
    assert response.status_code == 200
    assert 'href="/admin/dashboard/"' in response.content.decode()


def test_chart_library_is_served_from_the_projects_static_files(db):
    response = Client().get("/static/vendor/chartjs/chart.umd.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"Chart.js v4" in body[:200]


def test_budget_rows_sort_by_utilization_and_keep_the_top(make_user):
    rows = [
        {
            "budget_id": f"b{i}",
            "name": f"B{i:02d}",
            "tenant_id": "t",
            "currency": "USD",
            "amount": Decimal("100"),
            "spent": Decimal(i),
            "reserved": Decimal(0),
            "forecast": Decimal(i * 2),
        }
        for i in range(1, 21)
    ]
    data = admin_dashboard._budget_utilization(rows)
    assert len(data["labels"]) == admin_dashboard.BUDGET_LIMIT
    assert data["labels"][0] == "B20 · t"
    assert data["datasets"][0]["data"][0] == "20.0"
    assert data["datasets"][1]["data"][0] == "40.0"


def test_a_zero_amount_budget_does_not_divide_by_zero():
    data = admin_dashboard._budget_utilization(
        [{"budget_id": "b", "tenant_id": "t", "amount": 0, "spent": 5, "forecast": 9}]
    )
    assert data["datasets"][0]["data"] == ["0.0"]


def test_the_window_of_denials_is_24_whole_hours():
    start = datetime(2025, 1, 1, 0, tzinfo=UTC)
    data = admin_dashboard._ratelimit_denials(
        [(start + timedelta(minutes=59), 3), (start - timedelta(minutes=1), 100)],
        start,
        start + timedelta(hours=24),
    )
    assert len(data["labels"]) == 24
    assert data["datasets"][0]["data"][0] == 3
    assert data["total"] == 3


def test_dashboard_serves_the_demo_data_with_whatever_the_apps_registered(make_user):
    """The apps' real providers (those registered) on real rows: none may fail."""
    from django.core.management import call_command

    call_command("seed_demo", tenant="demo", verbosity=0)
    make_user("fin", {"demo": ["financial_controller", "auditor", "system_architect"]})
    for username in ("root", "fin"):
        if username == "root":
            make_user("root", superuser=True)
        response = _client(get_user_model().objects.get(username=username)).get(URL)
        assert response.status_code == 200
        states = {p["key"]: p["state"] for p in response.context["panels"]}
        assert set(states.values()) <= {"ok", "missing"}, states
