"""The managers' approval pages under /approvals/ (SPEC 8), with Django's test client.

The whole path through a real browser, with a real budget check, is in tests/browser.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import ApprovalRequest, Status
from approvals.services import request_approval
from receipts.models import Receipt
from tests.admin.conftest import PASSWORD

PERIOD = datetime(2025, 1, 1, tzinfo=UTC)


def _client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _request(tenant_id="t-acme", requested_by="svc-checkout", amount="250", **extra):
    return request_approval(
        tenant_id=tenant_id,
        kind=extra.pop("kind", "budget_overrun"),
        requested_by=requested_by,
        requested_amount=Decimal(amount),
        currency="USD",
        budget_id=extra.pop("budget_id", uuid.uuid4()),
        period_start=PERIOD,
        **extra,
    ).approval


@pytest.fixture
def manager(make_user):
    return make_user("finance", {"t-acme": ["financial_controller"]}, staff=False)


def test_anonymous_is_sent_to_sign_in(db):
    response = Client().get("/approvals/")
    assert response.status_code == 302
    assert response["Location"].startswith("/approvals/login/")


def test_sign_in_lands_on_the_pending_list(manager):
    client = Client()
    response = client.post(
        "/approvals/login/", {"username": "finance", "password": PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/approvals/"
    assert "Pending requests" in response.content.decode()


def test_pending_lists_the_managers_tenant_only(manager, make_user):
    mine = _request("t-acme")
    theirs = _request("t-globex")
    response = _client(manager).get("/approvals/")
    html = response.content.decode()
    assert response.status_code == 200
    assert str(mine.pk) in html
    assert str(theirs.pk) not in html


def test_decided_and_expired_requests_are_not_pending(manager):
    old = _request(at=timezone.now() - timedelta(hours=30))  # expired, not yet swept
    response = _client(manager).get("/approvals/")
    assert str(old.pk) not in response.content.decode()
    assert "Nothing is waiting for a decision." in response.content.decode()


def test_approve_with_a_comment_records_who_and_why(manager):
    approval = _request()
    response = _client(manager).post(
        f"/approvals/{approval.pk}/approve", {"comment": "Launch week, agreed."}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/approvals/{approval.pk}/"
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
    assert approval.decided_by == "user:finance"
    assert approval.comment == "Launch week, agreed."
    assert approval.approved_amount == Decimal("250")
    receipt = Receipt.objects.get(gate_id="approval")
    assert receipt.as_dict()["actor"]["principal"] == "user:finance"


def test_approve_a_smaller_amount(manager):
    approval = _request()
    _client(manager).post(
        f"/approvals/{approval.pk}/approve", {"comment": "Half.", "approved_amount": "125.5"}
    )
    approval.refresh_from_db()
    assert approval.approved_amount == Decimal("125.5")


def test_reject_with_a_comment_and_see_it_in_the_history(manager):
    approval = _request()
    client = _client(manager)
    response = client.post(f"/approvals/{approval.pk}/reject", {"comment": "Not this month."})
    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == Status.REJECTED
    assert approval.decided_by == "user:finance"

    history = client.get("/approvals/history/").content.decode()
    assert f'id="history-{approval.pk}"' in history
    assert "Not this month." in history
    assert "user:finance" in history


def test_a_decision_needs_a_comment(manager):
    approval = _request()
    response = _client(manager).post(f"/approvals/{approval.pk}/approve", {"comment": "   "})
    assert response.status_code == 400
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_a_bad_amount_is_refused(manager):
    approval = _request()
    response = _client(manager).post(
        f"/approvals/{approval.pk}/approve", {"comment": "ok", "approved_amount": "-3"}
    )
    assert response.status_code == 400
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_the_requester_cannot_approve_their_own_request(make_user):
    manager = make_user("finance", {"t-acme": ["financial_controller"]}, staff=False)
    approval = _request(requested_by="user:finance")
    client = _client(manager)

    page = client.get(f"/approvals/{approval.pk}/").content.decode()
    assert 'id="approve-form"' not in page
    assert "someone else must decide it" in page

    response = client.post(f"/approvals/{approval.pk}/approve", {"comment": "me, myself"})
    assert response.status_code == 403
    assert "The requester cannot decide their own request" in response.content.decode()
    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert approval.decided_by == ""


def test_a_second_decision_is_a_conflict(manager):
    approval = _request()
    client = _client(manager)
    client.post(f"/approvals/{approval.pk}/approve", {"comment": "yes"})
    response = client.post(f"/approvals/{approval.pk}/reject", {"comment": "no"})
    assert response.status_code == 409
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


def test_post_without_csrf_token_is_refused(manager):
    approval = _request()
    response = _csrf_client(manager).post(f"/approvals/{approval.pk}/approve", {"comment": "x"})
    assert response.status_code == 403
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_post_with_csrf_token_is_accepted(manager):
    approval = _request()
    client = _csrf_client(manager)
    client.get(f"/approvals/{approval.pk}/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        f"/approvals/{approval.pk}/approve", {"comment": "ok", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


def test_another_tenants_request_is_not_found_and_cannot_be_decided(manager):
    theirs = _request("t-globex")
    client = _client(manager)
    assert client.get(f"/approvals/{theirs.pk}/").status_code == 404
    response = client.post(f"/approvals/{theirs.pk}/approve", {"comment": "sneaky"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Status.PENDING


def test_a_malformed_id_is_not_found(manager):
    assert _client(manager).get("/approvals/not-a-uuid/").status_code == 404


def test_a_user_without_an_approving_role_is_refused(make_user):
    auditor = make_user("aud", {"t-acme": ["auditor", "tenant_admin"]}, staff=False)
    approval = _request()
    client = _client(auditor)
    assert client.get("/approvals/").status_code == 403
    assert client.get("/approvals/history/").status_code == 403
    assert client.post(f"/approvals/{approval.pk}/approve", {"comment": "x"}).status_code == 403
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_tenant_admin_approves_when_the_setting_allows(make_user, settings):
    settings.APPROVALS_ALLOW_TENANT_ADMIN = True
    admin_user = make_user("ta", {"t-acme": ["tenant_admin"]}, staff=False)
    approval = _request()
    response = _client(admin_user).post(f"/approvals/{approval.pk}/approve", {"comment": "ok"})
    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
    assert approval.decided_by == "user:ta"


def test_get_on_a_decision_url_is_not_allowed(manager):
    approval = _request()
    assert _client(manager).get(f"/approvals/{approval.pk}/approve").status_code == 405


def test_history_pages_and_orders_by_decision(manager):
    approvals = [_request() for _ in range(3)]
    client = _client(manager)
    for a in approvals:
        client.post(f"/approvals/{a.pk}/reject", {"comment": f"no {a.pk}"})
    html = client.get("/approvals/history/").content.decode()
    positions = [html.index(f'id="history-{a.pk}"') for a in reversed(approvals)]
    assert positions == sorted(positions)


def test_sign_out(manager):
    client = _client(manager)
    response = client.post("/approvals/logout/")
    assert response.status_code == 302
    assert client.get("/approvals/").status_code == 302


def test_a_page_request_never_writes_for_a_get(manager, django_assert_max_num_queries):
    for _ in range(5):
        _request()
    client = _client(manager)
    with django_assert_max_num_queries(12):
        response = client.get("/approvals/")
    assert response.status_code == 200
    assert ApprovalRequest.objects.filter(status=Status.PENDING).count() == 5


# --- the context beside a request, from the owning apps' selectors --------------------------


def _api(auth_fn, roles, sub="svc-checkout"):
    from rest_framework.test import APIClient

    return auth_fn(APIClient(), "t-acme", roles, sub=sub)


def test_budget_overrun_shows_utilization_forecast_and_projection(manager, auth):
    now = timezone.now()
    created = _api(auth, ["tenant_admin"], sub="ops").post(
        "/budget/v1/budgets",
        {
            "budget_name": "Checkout LLM",
            "budget_amount": "200",
            "period_type": "monthly",
            "start_date": f"{now:%Y-%m}-01",
            "allocated_to_type": "tenant",
            "allocated_to_id": "t-acme",
            "enforcement_action": "escalate",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    service = _api(auth, ["service"])
    held = service.post(
        "/budget/v1/budgets/check",
        {"resource_type": "llm", "estimated_cost": "50"},
        format="json",
    ).json()
    assert held["allowed"] is True
    denied = service.post(
        "/budget/v1/budgets/check",
        {"resource_type": "llm", "estimated_cost": "250"},
        format="json",
    ).json()
    approval_id = denied["approval_id"]

    response = _client(manager).get(f"/approvals/{approval_id}/")
    assert response.status_code == 200
    budget = response.context["context"]["budget"]
    assert budget["name"] == "Checkout LLM"
    assert budget["amount"] == Decimal("200")
    assert budget["reserved"] == Decimal("50.00")
    assert budget["utilization_pct"] == Decimal("25.0")
    assert budget["projected_pct"] == Decimal("150.0")  # (50 + 250) / 200
    html = response.content.decode()
    assert "Checkout LLM" in html
    assert "25.0 %" in html
    # the pending list carries the same context
    listed = _client(manager).get("/approvals/").content.decode()
    assert "Checkout LLM" in listed


def test_emergency_capacity_shows_the_policy_and_what_was_asked(manager, auth):
    architect = _api(auth, ["system_architect"], sub="ops-architect")
    policy = architect.post(
        "/budget/v1/rate-limits",
        {
            "policy_name": "Search API",
            "scope_type": "tenant",
            "scope_id": "t-acme",
            "resource_type": "search",
            "limit_value": 100,
            "time_window_seconds": 60,
        },
        format="json",
    )
    assert policy.status_code == 201, policy.content
    policy_id = policy.json()["policy_id"]
    asked = architect.post(
        f"/budget/v1/rate-limits/{policy_id}/emergency-capacity",
        {"extra_requests": 500, "duration_seconds": 6 * 3600, "reason": "Product launch"},
        format="json",
    )
    assert asked.status_code in (200, 201, 202), asked.content
    approval = ApprovalRequest.objects.get(kind="emergency_capacity")

    response = _client(manager).get(f"/approvals/{approval.pk}/")
    assert response.status_code == 200
    ctx = response.context["context"]
    assert ctx["policy"]["name"] == "Search API"
    assert ctx["policy"]["limit_value"] == 100
    assert ctx["request"]["extra_requests"] == 500
    assert ctx["request"]["duration_human"] == "6 h"
    assert [row["label"] for row in ctx["recent_use"]] == ["last hour", "last 24 hours"]
    html = response.content.decode()
    assert "Product launch" in html
    assert "+500 requests for 6 h" in html

    decided = _client(manager).post(f"/approvals/{approval.pk}/approve", {"comment": "Launch day."})
    assert decided.status_code == 302
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


def test_a_context_selector_failure_leaves_the_page_up(manager, monkeypatch):
    from approvals.pages import context

    def broken(approval):
        raise RuntimeError("selector bug")

    monkeypatch.setitem(context._CONTEXT, "budget_overrun", broken)
    approval = _request()
    response = _client(manager).get(f"/approvals/{approval.pk}/")
    assert response.status_code == 200
    assert "The context could not be read just now." in response.content.decode()


def test_a_request_whose_budget_is_gone_says_so(manager):
    approval = _request()  # a budget id that does not exist
    response = _client(manager).get(f"/approvals/{approval.pk}/")
    assert response.status_code == 200
    assert "The budget no longer exists." in response.content.decode()


def test_recent_spending_is_shown_when_the_budgets_app_provides_it(manager, auth, monkeypatch):
    from datetime import date

    import budgets.selectors

    calls = []

    def daily_spending(**kwargs):
        calls.append(kwargs)
        return [(date(2025, 1, 6), Decimal("12.5")), (date(2025, 1, 7), Decimal("30"))]

    monkeypatch.setattr(budgets.selectors, "daily_spending", daily_spending, raising=False)
    now = timezone.now()
    _api(auth, ["tenant_admin"], sub="ops").post(
        "/budget/v1/budgets",
        {
            "budget_name": "Ops",
            "budget_amount": "100",
            "period_type": "monthly",
            "start_date": f"{now:%Y-%m}-01",
            "allocated_to_type": "tenant",
            "allocated_to_id": "t-acme",
            "enforcement_action": "escalate",
        },
        format="json",
    )
    approval_id = (
        _api(auth, ["service"])
        .post(
            "/budget/v1/budgets/check",
            {"resource_type": "llm", "estimated_cost": "150"},
            format="json",
        )
        .json()["approval_id"]
    )

    html = _client(manager).get(f"/approvals/{approval_id}/").content.decode()
    assert "Recent spending (last 7 days)" in html
    assert "2025-01-07" in html
    assert "30.00 USD" in html
    assert calls[0]["tenant_id"] == "t-acme"
    assert calls[0]["end"] - calls[0]["start"] < timedelta(days=7)
