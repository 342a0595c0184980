"""The budget endpoints over HTTP (SPEC 2.1, 2.3, 2.4): status codes, 409s, soft delete,
current_period, utilization, and the check's answer shape."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from budgets.models import Budget, BudgetPeriod
from receipts.models import Receipt
from tests.budgets.conftest import check, counters, make_budget

pytestmark = pytest.mark.django_db

D = Decimal
BASE = "/budget/v1/budgets"
BODY = {
    "budget_name": "Search",
    "budget_amount": 500,
    "period_type": "monthly",
    "allocated_to_type": "project",
    "allocated_to_id": "p1",
    "enforcement_action": "hard_stop",
    "start_date": "2024-01-01",
}


@pytest.fixture
def admin(client_as):
    return client_as(["tenant_admin"], sub="admin-1")


@pytest.fixture
def finance(client_as):
    return client_as(["financial_controller"], sub="fc-1")


@pytest.fixture
def service(client_as):
    return client_as(["service"])


def _create(client, **overrides):
    response = client.post(BASE, {**BODY, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- Definitions ----------------------------------------------------------------------------


def test_create_returns_the_budget_with_defaults_and_current_period(admin, frozen):
    body = _create(admin)
    assert body["budget_type"] == "project"
    assert body["currency"] == "USD"
    assert body["version"] == 1
    assert body["thresholds"] == {"warning_80": True, "critical_90": True, "exhausted_100": True}
    assert body["approval_timeout_hours"] == 24
    assert body["start_date"] == "2024-01-01T00:00:00Z"
    assert body["end_date"] is None
    assert body["created_by"] == "admin-1"
    assert body["current_period"] == {
        "period_start": "2024-03-01T00:00:00Z",
        "period_end": "2024-04-01T00:00:00Z",
        "budget_amount": 500,
        "spent_amount": 0,
        "reserved_amount": 0,
        "remaining_budget": 500,
        "utilization_ratio": 0,
        "utilization_percent": 0,
        "forecast_amount": 0,
    }
    assert Receipt.objects.filter(gate_id="policy-admin").count() == 1


def test_a_second_overlapping_budget_for_the_target_is_409(admin, frozen):
    _create(admin)
    response = admin.post(BASE, {**BODY, "start_date": "2024-06-01"}, format="json")
    assert response.status_code == 409
    assert response.json()["error_code"] == "CONFLICT"
    assert Budget.objects.count() == 1


def test_budgets_for_the_same_target_may_follow_each_other(admin, frozen):
    _create(admin, end_date="2024-06-01")
    _create(admin, start_date="2024-06-01")
    assert Budget.objects.count() == 2


def test_create_validates(admin, frozen):
    cases = [
        {"budget_amount": 0},
        {"budget_amount": "-1"},
        {"budget_amount": "abc"},
        {"currency": "usd"},
        {"period_type": "hourly"},
        {"enforcement_action": "nope"},
        {"end_date": "2023-12-31"},
        {"period_type": "custom"},
        {"allocated_to_id": ""},
        {"start_date": "yesterday"},
        {"thresholds": {"warning_70": True}},
        {"unknown_field": 1},
        {"allocated_to_type": "tenant", "allocated_to_id": "someone-else"},
    ]
    for overrides in cases:
        response = admin.post(BASE, {**BODY, **overrides}, format="json")
        assert response.status_code == 400, (overrides, response.content)
        assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert Budget.objects.count() == 0


def test_unknown_field_is_named(admin, frozen):
    response = admin.post(BASE, {**BODY, "colour": "red"}, format="json")
    assert "colour" in response.json()["details"]


def test_tenant_budget_defaults_its_target_to_the_tenant(admin, frozen):
    body = _create(admin, allocated_to_type="tenant", allocated_to_id=None)
    assert body["allocated_to_id"] == "t-acme"


def test_get_list_and_filters(admin, frozen):
    a = _create(admin)
    b = _create(admin, allocated_to_type="feature", allocated_to_id="f1", budget_type="ml")
    _create(admin, allocated_to_id="p-old", start_date="2023-01-01", end_date="2023-06-01")
    listed = admin.get(BASE).json()
    assert listed["pagination"] == {
        "page": 1,
        "page_size": 100,
        "total_count": 3,
        "total_pages": 1,
    }
    assert admin.get(f"{BASE}?budget_type=ml").json()["budgets"][0]["budget_id"] == b["budget_id"]
    by_type = admin.get(f"{BASE}?allocated_to_type=project&allocated_to_id=p1").json()
    assert [x["budget_id"] for x in by_type["budgets"]] == [a["budget_id"]]
    assert admin.get(f"{BASE}?active_only=true").json()["pagination"]["total_count"] == 2
    assert admin.get(f"{BASE}?page_size=0").status_code == 400
    assert admin.get(f"{BASE}?allocated_to_type=galaxy").status_code == 400
    assert admin.get(f"{BASE}?what=1").status_code == 400
    one = admin.get(f"{BASE}/{a['budget_id']}")
    assert one.status_code == 200
    assert one["ETag"] == '"1"'


def test_bad_uuid_is_400_and_unknown_is_404(admin, frozen):
    assert admin.get(f"{BASE}/not-a-uuid").status_code == 400
    assert admin.get(f"{BASE}/00000000-0000-0000-0000-000000000000").status_code == 404


def test_put_replaces_with_version_precondition(admin, frozen):
    created = _create(admin)
    url = f"{BASE}/{created['budget_id']}"
    new = {**BODY, "budget_amount": 800, "version": 1}
    response = admin.put(url, new, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    assert response.json()["budget_amount"] == 800
    stale = admin.put(url, {**new, "budget_amount": 900}, format="json")
    assert stale.status_code == 409
    assert stale.json()["details"]["current_version"] == 2
    missing = dict(new)
    missing.pop("version")
    assert admin.put(url, missing, format="json").status_code == 400
    by_header = admin.put(url, missing, format="json", HTTP_IF_MATCH='"2"')
    assert by_header.status_code == 200
    assert by_header.json()["version"] == 3
    assert Budget.objects.get().budget_amount == D(500) + D(300)


def test_put_cannot_change_target_or_period_type(admin, frozen):
    created = _create(admin)
    url = f"{BASE}/{created['budget_id']}"
    for change in (
        {"allocated_to_id": "p2"},
        {"period_type": "daily"},
        {"allocated_to_type": "user"},
    ):
        response = admin.put(url, {**BODY, **change, "version": 1}, format="json")
        assert response.status_code == 400, change
    assert Budget.objects.get().version == 1


def test_put_new_amount_applies_to_the_current_period(admin, frozen):
    created = _create(admin, allocated_to_type="tenant", allocated_to_id=None)
    check("450")
    url = f"{BASE}/{created['budget_id']}"
    body = {**BODY, "allocated_to_type": "tenant", "allocated_to_id": None}
    admin.put(url, {**body, "budget_amount": 400, "version": 1}, format="json")
    assert BudgetPeriod.objects.get().budget_amount == D(400)
    assert check("1")["allowed"] is False


def test_delete_in_use_is_409_unless_forced_by_a_tenant_admin(admin, finance, frozen):
    created = _create(admin, allocated_to_type="tenant", allocated_to_id=None)
    held = check("40")
    url = f"{BASE}/{created['budget_id']}"
    assert admin.delete(url).status_code == 409
    assert finance.delete(f"{url}?force=true").status_code == 403
    assert Budget.objects.get().deleted_at is None
    response = admin.delete(f"{url}?force=true")
    assert response.status_code == 204
    budget = Budget.objects.get()
    assert counters(budget) == (D(0), D(0))
    assert admin.get(url).status_code == 404
    assert admin.get(BASE).json()["budgets"] == []
    assert admin.delete(url).status_code == 404
    assert check("1000")["budget_id"] is None
    assert held["reservation_id"] is not None


def test_delete_unused_budget_is_204(finance, frozen):
    created = _create(finance)
    assert finance.delete(f"{BASE}/{created['budget_id']}").status_code == 204


def test_utilization_has_one_row_per_period(admin, frozen):
    created = _create(admin, allocated_to_type="tenant", allocated_to_id=None)
    check("100")
    body = admin.get(f"{BASE}/{created['budget_id']}/utilization").json()
    rows = body["utilization"]
    assert [r["period_start"][:10] for r in rows] == ["2024-03-01", "2024-02-01", "2024-01-01"]
    assert rows[0]["reserved_amount"] == 100
    assert rows[0]["utilization_percent"] == 20
    assert rows[0]["current"] is True
    assert rows[1]["spent_amount"] == 0
    assert body["pagination"]["total_count"] == 3
    paged = admin.get(f"{BASE}/{created['budget_id']}/utilization?page=2&page_size=2").json()
    assert [r["period_start"][:10] for r in paged["utilization"]] == ["2024-01-01"]


# --- Checks over HTTP -----------------------------------------------------------------------


def test_check_answers_200_with_the_whole_shape(service, frozen):
    make_budget("100")
    response = service.post(
        f"{BASE}/check",
        {"estimated_cost": "25.50", "resource_type": "gpu", "operation_context": {}},
        format="json",
        HTTP_X_CORRELATION_ID="corr-1",
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {
        "allowed",
        "budget_id",
        "remaining_budget",
        "utilization_ratio",
        "utilization_percent",
        "enforcement_action",
        "reason",
        "message",
        "reservation_id",
        "reservation_expires_at",
        "requires_approval",
        "approval_id",
        "throttle_factor",
        "applied_budgets",
        "receipt_id",
        "correlation_id",
    }
    assert body["allowed"] is True
    assert body["remaining_budget"] == 74.5
    assert body["correlation_id"] == "corr-1"
    assert body["reservation_expires_at"] == "2024-03-15T12:15:00Z"
    assert Receipt.objects.filter(receipt_id=body["receipt_id"]).exists()


def test_soft_limit_over_100_percent_over_http(service, frozen):
    make_budget("100", action="soft_limit")
    service.post(f"{BASE}/check", {"estimated_cost": 100}, format="json")
    body = service.post(f"{BASE}/check", {"estimated_cost": 20}, format="json").json()
    assert body["allowed"] is True
    assert body["utilization_ratio"] == 1
    assert body["utilization_percent"] == 120


def test_check_validation(service, frozen):
    for bad in (
        {},
        {"estimated_cost": -1},
        {"estimated_cost": "x"},
        {"estimated_cost": 1, "hold_ttl_seconds": 86401},
        {"estimated_cost": 1, "hold_ttl_seconds": 0},
        {"estimated_cost": 1, "approval_id": "nope"},
        {"estimated_cost": 1, "allocated_to_type": "planet"},
        {"estimated_cost": 1, "operation_context": []},
        {"estimated_cost": 1, "operation_context": {"project_id": {"x": 1}}},
        {"estimated_cost": 1, "surprise": True},
    ):
        response = service.post(f"{BASE}/check", bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    for raw in ('{"estimated_cost": 1e400}', '{"estimated_cost": NaN}', "[1]", '"x"'):
        response = service.post(f"{BASE}/check", raw, content_type="application/json")
        assert response.status_code == 400, (raw, response.content)
    malformed = service.post(f"{BASE}/check", "{not json", content_type="application/json")
    assert malformed.status_code == 400


def test_batch_over_http_and_its_limit(service, frozen):
    budget = make_budget("100")
    ok = service.post(
        f"{BASE}/check/batch",
        {"checks": [{"estimated_cost": 10}, {"estimated_cost": 20}]},
        format="json",
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["allowed"] is True
    assert [r["remaining_budget"] for r in body["results"]] == [90, 70]
    too_many = service.post(
        f"{BASE}/check/batch", {"checks": [{"estimated_cost": 1}] * 501}, format="json"
    )
    assert too_many.status_code == 413
    assert too_many.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    empty = service.post(f"{BASE}/check/batch", {"checks": []}, format="json")
    assert empty.status_code == 400
    bad_item = service.post(
        f"{BASE}/check/batch",
        {"checks": [{"estimated_cost": 1}, {"estimated_cost": -5}]},
        format="json",
    )
    assert bad_item.status_code == 400
    assert "1" in bad_item.json()["details"]["checks"]
    assert counters(budget) == (D(0), D(30))


def test_hold_endpoints(service, frozen):
    budget = make_budget("100")
    held = service.post(f"{BASE}/check", {"estimated_cost": 40}, format="json").json()
    url = f"{BASE}/reservations/{held['reservation_id']}"
    shown = service.get(url).json()
    assert shown["status"] == "active"
    assert shown["holds"] == [{"budget_id": str(budget.pk), "amount": 40, "active": True}]
    extended = service.post(f"{url}/extend", {"hold_ttl_seconds": 3600}, format="json")
    assert extended.status_code == 200
    assert extended.json()["reservation_expires_at"] == "2024-03-15T13:00:00Z"
    committed = service.post(f"{url}/commit", {"actual_cost": "38.25"}, format="json")
    assert committed.status_code == 200
    assert committed.json()["status"] == "committed"
    assert committed.json()["receipt_id"]
    assert counters(budget) == (D("38.25"), D(0))
    again = service.post(f"{url}/release", {}, format="json")
    assert again.status_code == 409
    assert again.json()["error_code"] == "CONFLICT"
    assert service.post(f"{url}/commit", {}, format="json").status_code == 400
    assert service.post(f"{BASE}/reservations/zzz/release", {}, format="json").status_code == 400
    assert (
        service.post(
            f"{BASE}/reservations/00000000-0000-0000-0000-000000000000/release", {}, format="json"
        ).status_code
        == 404
    )


def test_idempotent_check_is_replayed_not_held_twice(service, frozen):
    budget = make_budget("100")
    first = service.post(
        f"{BASE}/check", {"estimated_cost": 10}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    second = service.post(
        f"{BASE}/check", {"estimated_cost": 10}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert second["Idempotent-Replayed"] == "true"
    assert first.json()["reservation_id"] == second.json()["reservation_id"]
    assert counters(budget) == (D(0), D(10))


def test_dates_accept_instants_with_offsets(admin, frozen):
    body = _create(admin, start_date="2024-01-01T02:00:00+02:00")
    assert body["start_date"] == "2024-01-01T00:00:00Z"
    assert Budget.objects.get().start_date == datetime(2024, 1, 1, tzinfo=UTC)


def test_utilization_of_a_long_daily_budget_starts_with_the_current_period(admin, frozen):
    created = _create(admin, period_type="daily", start_date="2020-01-01")
    body = admin.get(f"{BASE}/{created['budget_id']}/utilization?page_size=2").json()
    assert [r["period_start"][:10] for r in body["utilization"]] == ["2024-03-15", "2024-03-14"]
    assert body["pagination"]["total_count"] == 1536


def test_dates_outside_the_supported_years_are_400(admin, frozen):
    for value in ("9999-12-31", "1969-12-31T23:59:59Z", "0001-01-01"):
        response = admin.post(BASE, {**BODY, "start_date": value}, format="json")
        assert response.status_code == 400, value
