"""Stand-in dashboard providers for tests of the page itself (the real ones are the apps')."""

from datetime import timedelta
from decimal import Decimal

import pytest

from budgeting_site.platform import admin_dashboard


@pytest.fixture
def calls():
    return []


@pytest.fixture
def fake_providers(calls):
    """Stand-in providers (the real ones are the apps'); the registry is restored after."""
    saved = admin_dashboard.providers()

    def cost_per_day(**kw):
        calls.append(("cost_per_day", kw))
        last, first = kw["end"].date() - timedelta(days=1), kw["start"].date()
        return [
            (last, "USD", Decimal("12.5")),
            (last - timedelta(days=1), "USD", Decimal("7.25")),
            (first, "USD", Decimal("3")),  # the first of the 30 days
            (first - timedelta(days=1), "USD", Decimal("99")),  # outside: ignored
            (last, "EUR", Decimal("1")),
        ]

    def top_spenders(**kw):
        calls.append(("top_spenders", kw))
        return [
            ("tenant", "t-acme", "USD", Decimal("100")),
            ("project", "p-search", "USD", Decimal("60")),
            ("project", "p-chat", "USD", Decimal("40")),
            ("feature", "f-summary", "USD", Decimal("30")),
        ]

    def budget_utilization(**kw):
        calls.append(("budget_utilization", kw))
        return [
            {
                "budget_id": "b1",
                "name": "Search",
                "tenant_id": "t-acme",
                "currency": "USD",
                "amount": Decimal("200"),
                "spent": Decimal("150"),
                "reserved": Decimal("10"),
                "forecast": Decimal("260"),
            },
            {
                "budget_id": "b2",
                "name": "Chat",
                "tenant_id": "t-acme",
                "currency": "USD",
                "amount": Decimal("100"),
                "spent": Decimal("20"),
                "reserved": Decimal("0"),
                "forecast": Decimal("40"),
            },
        ]

    def ratelimit_denials(**kw):
        calls.append(("ratelimit_denials", kw))
        return [(kw["end"] - timedelta(hours=2), 4), (kw["end"] - timedelta(hours=1), 2)]

    def open_alerts(**kw):
        calls.append(("open_alerts", kw))
        return [("warning", 3), ("critical", 1)]

    for key, fn in {
        "cost_per_day": cost_per_day,
        "top_spenders": top_spenders,
        "budget_utilization": budget_utilization,
        "ratelimit_denials": ratelimit_denials,
        "open_alerts": open_alerts,
    }.items():
        admin_dashboard.register(key, fn)
    yield
    for key in admin_dashboard.PANELS:
        admin_dashboard.unregister(key)
    for key, fn in saved.items():
        admin_dashboard.register(key, fn)
