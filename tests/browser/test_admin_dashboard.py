"""Sign in to the admin in Chromium and see every dashboard chart drawn."""

import pytest

from tests.admin.conftest import PASSWORD
from tests.browser.conftest import canvas_painted_pixels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = [
    "chart-cost_per_day",
    "chart-top_spenders-tenant",
    "chart-top_spenders-project",
    "chart-top_spenders-feature",
    "chart-budget_utilization",
    "chart-ratelimit_denials",
    "chart-open_alerts",
]


def admin_sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/dashboard/")


def test_every_dashboard_chart_is_drawn(page, live_server, make_user, fake_providers):
    make_user("root", superuser=True)
    admin_sign_in(page, live_server.url, "root")

    page.wait_for_selector("body[data-charts-drawn='1']")
    sources = page.eval_on_selector_all(
        "canvas.dashboard-chart", "cs => cs.map(c => c.dataset.source)"
    )
    assert sources == CHARTS
    painted = canvas_painted_pixels(page, "canvas.dashboard-chart")
    assert all(count > 500 for count in painted), dict(zip(sources, painted, strict=True))
    # the library is ours, not a CDN's
    assert page.evaluate("typeof Chart") == "function"
    scripts = page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
    assert all(src.startswith(live_server.url) for src in scripts), scripts


def test_staff_without_membership_sees_no_chart(page, live_server, make_user, fake_providers):
    make_user("nobody")
    admin_sign_in(page, live_server.url, "nobody")

    assert page.locator("canvas.dashboard-chart").count() == 0
    assert page.locator("text=Your roles do not include reading these figures").count() == 5
