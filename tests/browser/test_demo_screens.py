"""The demo tenant as `make run` shows it: the dashboard and the approval pages on the data of
`seed_demo`, through the apps' own dashboard providers. With UPDATE_SCREENSHOTS=1 these tests
refresh the committed screenshots in docs/screenshots/."""

import pytest
from django.core.management import call_command

from budgeting_site.platform.management.commands.seed_demo import DEMO_PASSWORD
from tests.browser.conftest import canvas_painted_pixels, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo():
    from ratelimits import runtime

    runtime.forget("demo")  # no cached rate-limit policies of an earlier test's demo tenant
    call_command("seed_demo", verbosity=0)


def _sign_in(page, url: str, username: str, submit: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click(submit)


def test_demo_dashboard_draws_every_panel_that_has_data(page, live_server, demo, tmp_path):
    _sign_in(
        page,
        f"{live_server.url}/admin/login/?next=/admin/dashboard/",
        "admin",
        "input[type=submit]",
    )
    page.wait_for_url(f"{live_server.url}/admin/dashboard/")
    page.wait_for_selector("body[data-charts-drawn='1']")

    states = page.eval_on_selector_all(
        "section.dashboard-panel", "ss => ss.map(s => [s.id, s.dataset.state])"
    )
    assert len(states) == 5
    # Every app registers its panel and the demo gives each one figures: nothing is empty.
    assert all(state == "ok" for _, state in states), states
    painted = canvas_painted_pixels(page, "canvas.dashboard-chart")
    assert len(painted) == 7  # cost per day, 3 x top spenders, budgets, denials, alerts
    assert all(count > 500 for count in painted), painted
    screenshot(page, "admin-dashboard.png", tmp_path)


def test_demo_approval_pages(page, live_server, demo, tmp_path):
    _sign_in(page, f"{live_server.url}/approvals/login/", "finance", "button[type=submit]")
    page.wait_for_url(f"{live_server.url}/approvals/")
    assert page.inner_text("#signed-in-user") == "finance"
    overrun = page.locator("article.request", has=page.locator("span.kind.budget_overrun"))
    capacity = page.locator("article.request", has=page.locator("span.kind.emergency_capacity"))
    assert overrun.count() == 1
    assert capacity.count() == 1
    assert "svc-summarizer" in overrun.inner_text()
    screenshot(page, "approvals-pending.png", tmp_path)

    overrun.locator("a.button", has_text="Review").click()
    page.wait_for_selector("#approval-status")
    assert page.locator("caption", has_text="Recent spending (last 7 days)").is_visible()
    assert page.locator("button", has_text="Approve").is_visible()
    screenshot(page, "approvals-request.png", tmp_path)

    page.go_back()
    capacity.locator("a.button", has_text="Review").click()
    page.wait_for_selector("#approval-status")
    assert "+600 requests for 6 h" in page.inner_text("main")
    screenshot(page, "approvals-capacity.png", tmp_path)

    page.goto(f"{live_server.url}/approvals/history/")
    assert page.locator("h1", has_text="History").is_visible()
    rejected = page.locator("table.history tr", has=page.locator("span.status.rejected"))
    assert rejected.count() == 1
    assert "user:finance" in rejected.inner_text()
    screenshot(page, "approvals-history.png", tmp_path)
