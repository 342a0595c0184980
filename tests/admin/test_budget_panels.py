"""The budgets app's reads for the people's side: the dashboard's `budget_utilization` panel
(`budgets.selectors.dashboard_budget_utilization`) and the approval page's recent spending
(`budgets.selectors.daily_spending`), on real budgets written through the budgets services."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from budgeting_site.platform import admin_dashboard
from budgeting_site.platform.principal import Principal
from budgets import selectors, services
from budgets.models import BudgetPeriod
from tests.admin.conftest import PASSWORD

#: A Tuesday at midnight: the March period has 14 days left, the forecast window is 7 days.
NOW = datetime(2025, 3, 18, tzinfo=UTC)
MARCH = datetime(2025, 3, 1, tzinfo=UTC)


def _admin(tenant_id: str) -> Principal:
    return Principal(
        principal="admin-1", tenant_id=tenant_id, roles=frozenset({"tenant_admin"}), kind="jwt"
    )


def _budget(
    name: str,
    amount: str,
    *,
    tenant_id: str = "t-acme",
    target: str,
    kind: str = "project",
    action: str = "soft_limit",
    start: datetime = MARCH,
    end: datetime | None = None,
):
    return services.create_budget(
        tenant_id=tenant_id,
        data={
            "budget_name": name,
            "budget_amount": Decimal(amount),
            "currency": "USD",
            "period_type": "monthly",
            "start_date": start,
            "end_date": end,
            "allocated_to_type": kind,
            "allocated_to_id": target,
            "enforcement_action": action,
        },
        actor=_admin(tenant_id),
    )


def _spend(target: str, amount: str, at: datetime, record_id: str, *, tenant_id: str = "t-acme"):
    services.apply_spending(
        tenant_id=tenant_id,
        amount=Decimal(amount),
        currency="USD",
        attributed_to_type="project",
        attributed_to_id=target,
        record_id=record_id,
        at=at,
    )


@pytest.fixture
def budgets(db):
    """Two active budgets of t-acme (one with spending, one with a hold), one of t-globex, and
    three that are not active now (ended, not started, deleted)."""
    with time_machine.travel(NOW, tick=False):
        search = _budget("Search", "1000", target="p-search")
        _spend("p-search", "70", datetime(2025, 3, 2, tzinfo=UTC), "r-1")  # before the window
        _spend("p-search", "140", datetime(2025, 3, 12, tzinfo=UTC), "r-2")  # in the last 7 days
        chat = _budget("Chat", "500", target="p-chat")
        held = services.check_budget(
            tenant_id="t-acme",
            check=services.CheckInput(
                estimated_cost=Decimal("50"),
                allocated_to_type="project",
                allocated_to_id="p-chat",
            ),
            principal=Principal(
                principal="svc-chat", tenant_id="t-acme", roles=frozenset({"service"})
            ),
        )
        assert held["allowed"] is True
        _budget("Old", "100", target="p-old", start=datetime(2025, 1, 1, tzinfo=UTC), end=MARCH)
        _budget("Next", "100", target="p-next", start=datetime(2025, 4, 1, tzinfo=UTC))
        gone = _budget("Gone", "100", target="p-gone")
        services.delete_budget(
            tenant_id="t-acme", budget_id=gone.pk, force=False, actor=_admin("t-acme")
        )
        globex = _budget("Globex", "100", tenant_id="t-globex", target="p-x")
        _spend("p-x", "90", datetime(2025, 3, 17, tzinfo=UTC), "g-1", tenant_id="t-globex")
    return {"search": search, "chat": chat, "globex": globex}


def _row(budget, amount, spent, reserved, forecast):
    return {
        "budget_id": budget.pk,
        "name": budget.budget_name,
        "tenant_id": budget.tenant_id,
        "currency": "USD",
        "amount": Decimal(amount),
        "spent": Decimal(spent),
        "reserved": Decimal(reserved),
        "forecast": Decimal(forecast),
    }


def test_the_budgets_app_registers_the_utilization_panel():
    provider = admin_dashboard.providers()["budget_utilization"]
    assert provider is selectors.dashboard_budget_utilization


def test_utilization_rows_are_the_current_period_of_the_tenants_active_budgets(budgets):
    rows = selectors.dashboard_budget_utilization(tenant_ids=["t-acme"], start=NOW, end=NOW)

    # Most used first; the ended, not yet started and deleted budgets are left out.
    # Search: 210 spent; forecast 210 + 140 in the last 7 days x 2 (14 days left) = 490.
    # Chat: nothing spent, 50 held (holds count toward utilization, not the forecast).
    assert rows == [
        _row(budgets["search"], "1000", "210", "0", "490"),
        _row(budgets["chat"], "500", "0", "50", "0"),
    ]


def test_every_tenant_for_a_superuser_and_none_for_an_unknown_tenant(budgets):
    everyone = selectors.dashboard_budget_utilization(tenant_ids=None, start=NOW, end=NOW)
    # Globex: 90 spent of 100 on the 17th, 90 x 2 more by the end of the month.
    assert [r["name"] for r in everyone] == ["Globex", "Search", "Chat"]
    assert everyone[0] == _row(budgets["globex"], "100", "90", "0", "270")

    assert selectors.dashboard_budget_utilization(tenant_ids=["t-else"], start=NOW, end=NOW) == []


def test_a_budget_without_a_period_row_yet_shows_zero(db):
    with time_machine.travel(NOW, tick=False):
        fresh = _budget("Fresh", "300", target="p-fresh")
    assert not BudgetPeriod.objects.filter(budget=fresh).exists()
    rows = selectors.dashboard_budget_utilization(tenant_ids=["t-acme"], start=NOW, end=NOW)
    assert rows == [_row(fresh, "300", "0", "0", "0")]


def test_the_cap_keeps_the_most_used_budgets(budgets, monkeypatch):
    monkeypatch.setattr(selectors, "DASHBOARD_MAX_BUDGETS", 2)
    rows = selectors.dashboard_budget_utilization(tenant_ids=None, start=NOW, end=NOW)
    assert [r["name"] for r in rows] == ["Globex", "Search"]


def test_the_provider_reads_a_bounded_number_of_queries(budgets, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        rows = selectors.dashboard_budget_utilization(tenant_ids=None, start=NOW, end=NOW)
    assert len(rows) == 3


def _chart(html: str, element_id: str) -> dict:
    start = html.index(">", html.index(f'id="{element_id}"')) + 1
    return json.loads(html[start : html.index("</script>", start)])


def test_the_dashboard_draws_the_budget_panel_from_the_budgets_app(budgets, make_user):
    user = make_user("fin", {"t-acme": ["financial_controller"]})
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    with time_machine.travel(NOW, tick=False):
        response = client.get("/admin/dashboard/")

    assert response.status_code == 200
    panel = {p["key"]: p for p in response.context["panels"]}["budget_utilization"]
    assert panel["state"] == "ok"
    html = response.content.decode()
    chart = _chart(html, "chart-budget_utilization")
    assert chart["labels"] == ["Search · t-acme", "Chat · t-acme"]  # not Globex: not theirs
    assert chart["datasets"][0]["data"] == ["21.0", "10.0"]  # (spent + reserved) / amount
    assert chart["datasets"][1]["data"] == ["49.0", "0.0"]  # forecast / amount
    assert "210.00" in html  # the table beside the chart


# --- daily_spending -------------------------------------------------------------------------


@pytest.fixture
def ledger(db):
    """Search's ledger: 140 + 10 on the 12th, 5 - 4 on the 14th, 7 on the 17th, 1000 at the
    range's end; and a neighbour budget's spending on the 12th."""
    with time_machine.travel(NOW, tick=False):
        search = _budget("Search", "5000", target="p-search")
        _budget("Chat", "500", target="p-chat")
        _spend("p-search", "140", datetime(2025, 3, 12, 10, tzinfo=UTC), "r-1")
        _spend("p-search", "10", datetime(2025, 3, 12, 23, 59, tzinfo=UTC), "r-2")
        _spend("p-search", "5", datetime(2025, 3, 14, tzinfo=UTC), "r-3")
        _spend("p-search", "-4", datetime(2025, 3, 14, 8, tzinfo=UTC), "r-4")  # a reversal
        _spend("p-search", "7", datetime(2025, 3, 17, 23, 59, 59, tzinfo=UTC), "r-5")
        _spend("p-search", "1000", NOW, "r-6")  # at `end`: outside [start, end)
        _spend("p-chat", "33", datetime(2025, 3, 12, 12, tzinfo=UTC), "c-1")
    return search


def test_daily_spending_sums_each_utc_day_and_fills_the_quiet_ones(ledger):
    days = selectors.daily_spending(
        tenant_id="t-acme", budget_id=ledger.pk, start=datetime(2025, 3, 11, tzinfo=UTC), end=NOW
    )
    assert days == [
        (date(2025, 3, 11), Decimal("0")),
        (date(2025, 3, 12), Decimal("150")),
        (date(2025, 3, 13), Decimal("0")),
        (date(2025, 3, 14), Decimal("1")),
        (date(2025, 3, 15), Decimal("0")),
        (date(2025, 3, 16), Decimal("0")),
        (date(2025, 3, 17), Decimal("7")),
    ]
    assert all(isinstance(amount, Decimal) for _, amount in days)


def test_daily_spending_honours_a_window_that_starts_and_ends_inside_a_day(ledger):
    days = selectors.daily_spending(
        tenant_id="t-acme",
        budget_id=ledger.pk,
        start=datetime(2025, 3, 12, 12, tzinfo=UTC),
        end=NOW + timedelta(hours=1),
    )
    assert days[0] == (date(2025, 3, 12), Decimal("10"))  # 140 at 10:00 is before the start
    assert days[-1] == (date(2025, 3, 18), Decimal("1000"))
    assert len(days) == 7


def test_daily_spending_of_another_tenants_budget_is_nothing(ledger):
    days = selectors.daily_spending(
        tenant_id="t-globex",
        budget_id=ledger.pk,
        start=datetime(2025, 3, 11, tzinfo=UTC),
        end=NOW,
    )
    assert days == [(date(2025, 3, 11) + timedelta(days=n), Decimal(0)) for n in range(7)]


def test_daily_spending_of_an_empty_or_oversized_range(ledger):
    assert (
        selectors.daily_spending(tenant_id="t-acme", budget_id=ledger.pk, start=NOW, end=NOW) == []
    )
    with pytest.raises(ValueError):
        selectors.daily_spending(
            tenant_id="t-acme", budget_id=ledger.pk, start=NOW - timedelta(days=400), end=NOW
        )


def test_the_approval_page_shows_the_budgets_recent_spending(make_user):
    now = NOW + timedelta(hours=10)
    manager = make_user("finance", {"t-acme": ["financial_controller"]}, staff=False)
    with time_machine.travel(now, tick=False):
        summarize = _budget(
            "Summarize", "750", kind="feature", target="feat-summarize", action="escalate"
        )
        for day, amount in ((12, "100"), (12, "20.5"), (16, "60"), (18, "5")):
            services.apply_spending(
                tenant_id="t-acme",
                amount=Decimal(amount),
                currency="USD",
                attributed_to_type="feature",
                attributed_to_id="feat-summarize",
                record_id=f"s-{day}-{amount}",
                at=datetime(2025, 3, day, 1, tzinfo=UTC),
            )
        answer = services.check_budget(
            tenant_id="t-acme",
            check=services.CheckInput(
                estimated_cost=Decimal("700"),
                allocated_to_type="feature",
                allocated_to_id="feat-summarize",
            ),
            principal=Principal(
                principal="svc-summarizer", tenant_id="t-acme", roles=frozenset({"service"})
            ),
        )
        assert answer["requires_approval"] is True
        client = Client()
        assert client.login(username=manager.username, password=PASSWORD)
        response = client.get(f"/approvals/{answer['approval_id']}/")

    assert response.status_code == 200
    recent = response.context["context"]["recent_spending"]
    assert recent == [
        {"day": date(2025, 3, 12), "amount": Decimal("120.50")},
        {"day": date(2025, 3, 13), "amount": Decimal("0.00")},
        {"day": date(2025, 3, 14), "amount": Decimal("0.00")},
        {"day": date(2025, 3, 15), "amount": Decimal("0.00")},
        {"day": date(2025, 3, 16), "amount": Decimal("60.00")},
        {"day": date(2025, 3, 17), "amount": Decimal("0.00")},
        {"day": date(2025, 3, 18), "amount": Decimal("5.00")},
    ]
    html = response.content.decode()
    assert "Recent spending (last 7 days)" in html
    assert "120.50 USD" in html
    assert summarize.budget_name in html
