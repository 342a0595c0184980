"""The managers' approval pages in Chromium: the whole escalation path, the reject path,
CSRF, and tenant isolation (issue 8, "What must be shown")."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from approvals.models import ApprovalRequest, Status
from budgeting_site.platform import clock
from budgeting_site.platform.auth import issue_jwt
from tests.admin.conftest import PASSWORD
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TENANT = "t-acme"
REQUESTER = "svc-checkout"


def _api(roles: list[str], sub: str) -> APIClient:
    client = APIClient()
    token = issue_jwt(tenant_id=TENANT, roles=roles, sub=sub)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _escalate_budget(amount: str = "100") -> str:
    now = clock.now()
    response = _api(["tenant_admin"], "ops").post(
        "/budget/v1/budgets",
        {
            "budget_name": "Checkout LLM",
            "budget_amount": amount,
            "currency": "USD",
            "period_type": "monthly",
            "start_date": datetime(now.year, now.month, 1, tzinfo=UTC).strftime("%Y-%m-%d"),
            "allocated_to_type": "tenant",
            "allocated_to_id": TENANT,
            "enforcement_action": "escalate",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["budget_id"]


def _check(estimated_cost: str, approval_id: str | None = None) -> dict:
    body = {"tenant_id": TENANT, "resource_type": "llm_tokens", "estimated_cost": estimated_cost}
    if approval_id:
        body["approval_id"] = approval_id
    response = _api(["service"], REQUESTER).post("/budget/v1/budgets/check", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/approvals/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/approvals/")
    assert page.inner_text("#signed-in-user") == username


@pytest.fixture
def finance(make_user):
    return make_user("finance", {TENANT: ["financial_controller"]}, staff=False)


def test_escalation_path_check_denied_approved_on_the_page_then_allowed(
    page, live_server, finance, tmp_path
):
    budget_id = _escalate_budget("100")
    denied = _check("150")
    assert denied["allowed"] is False
    assert denied["requires_approval"] is True
    approval_id = denied["approval_id"]
    assert approval_id

    _sign_in(page, live_server.url, "finance")
    card = page.locator(f"#request-{approval_id}")
    assert card.is_visible()
    assert "150" in card.inner_text()
    assert REQUESTER in card.inner_text()
    screenshot(page, "approvals-pending.png", tmp_path)

    card.locator("a.button", has_text="Review").click()
    page.wait_for_url(f"{live_server.url}/approvals/{approval_id}/")
    assert page.text_content("#approval-status") == "pending"
    page.fill("#approve-comment", "Launch week: approved once.")
    page.click("#approve-button")
    page.wait_for_url(f"{live_server.url}/approvals/{approval_id}/")
    assert page.text_content("#approval-status") == "approved"
    assert "user:finance" in page.inner_text("#decided-by")
    assert page.inner_text("#decision-comment") == "Launch week: approved once."
    screenshot(page, "approvals-decided.png", tmp_path)

    approval = ApprovalRequest.objects.get(pk=approval_id)
    assert approval.status == Status.APPROVED
    assert approval.decided_by == "user:finance"
    assert str(approval.budget_id) == budget_id
    assert approval.approved_amount == Decimal("150")

    allowed = _check("150", approval_id=approval_id)
    assert allowed["allowed"] is True
    assert allowed["reservation_id"]
    # consumed: the same approval does not admit a second overrun
    again = _check("150", approval_id=approval_id)
    assert again["allowed"] is False

    page.goto(f"{live_server.url}/approvals/history/")
    row = page.locator(f"#history-{approval_id}")
    assert "user:finance" in row.inner_text()
    assert "Launch week: approved once." in row.inner_text()


def test_reject_path(page, live_server, finance):
    _escalate_budget("100")
    approval_id = _check("150")["approval_id"]

    _sign_in(page, live_server.url, "finance")
    page.goto(f"{live_server.url}/approvals/{approval_id}/")
    page.fill("#reject-comment", "Not in this quarter's plan.")
    page.click("#reject-button")
    page.wait_for_url(f"{live_server.url}/approvals/{approval_id}/")
    assert page.text_content("#approval-status") == "rejected"

    approval = ApprovalRequest.objects.get(pk=approval_id)
    assert approval.status == Status.REJECTED
    assert approval.comment == "Not in this quarter's plan."
    assert approval.decided_by == "user:finance"

    still_denied = _check("150", approval_id=approval_id)
    assert still_denied["allowed"] is False
    assert still_denied["requires_approval"] is True

    page.goto(f"{live_server.url}/approvals/")
    assert page.locator(f"#request-{approval_id}").count() == 0
    # the re-sent check asked again: a fresh request, not the rejected one
    assert still_denied["approval_id"] != approval_id
    page.goto(f"{live_server.url}/approvals/history/")
    assert "Not in this quarter's plan." in page.inner_text(f"#history-{approval_id}")


def test_post_without_the_csrf_token_is_refused(page, live_server, finance):
    _escalate_budget("100")
    approval_id = _check("150")["approval_id"]
    _sign_in(page, live_server.url, "finance")
    page.goto(f"{live_server.url}/approvals/{approval_id}/")

    # The signed-in browser posts the form with the token removed...
    page.eval_on_selector(
        "#approve-form", "f => f.querySelector('[name=csrfmiddlewaretoken]').remove()"
    )
    page.fill("#approve-comment", "forged")
    with page.expect_response(f"**/approvals/{approval_id}/approve") as posted:
        page.click("#approve-button")
    assert posted.value.status == 403
    # ...and a cross-site style POST with the session cookie but no token.
    response = page.request.post(
        f"{live_server.url}/approvals/{approval_id}/approve", form={"comment": "forged"}
    )
    assert response.status == 403

    approval = ApprovalRequest.objects.get(pk=approval_id)
    assert approval.status == Status.PENDING
    assert approval.decided_by == ""


def test_a_manager_of_another_tenant_does_not_see_the_request(page, live_server, make_user):
    make_user("globex-finance", {"t-globex": ["financial_controller"]}, staff=False)
    _escalate_budget("100")
    approval_id = _check("150")["approval_id"]

    _sign_in(page, live_server.url, "globex-finance")
    assert page.locator(f"#request-{approval_id}").count() == 0
    assert page.locator("#no-pending").is_visible()

    response = page.goto(f"{live_server.url}/approvals/{approval_id}/")
    assert response.status == 404
    assert page.locator("#not-found").is_visible()
    posted = page.request.post(
        f"{live_server.url}/approvals/{approval_id}/approve",
        form={"comment": "sneaky"},
        headers={"X-CSRFToken": _csrf_cookie(page)},
    )
    assert posted.status == 404
    assert ApprovalRequest.objects.get(pk=approval_id).status == Status.PENDING


def _csrf_cookie(page) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("csrftoken", "")
