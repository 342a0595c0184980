from datetime import UTC, datetime

import pytest

from budgeting_site.platform import clock
from events.models import Alert
from events.services import raise_alert

pytestmark = pytest.mark.django_db

URL = "/budget/v1/alerts"


def _error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error_code"] == code
    return response.json()


def _alert(tenant="t-acme", at=None, **overrides):
    fields = {
        "tenant_id": tenant,
        "alert_type": "budget_threshold_exceeded",
        "severity": "warning",
        "title": "80% of the budget used",
        "message": "b-1 reached 80%",
        "resource_id": "b-1",
        "dedup_key": "2025-03:80",
        "details": {"threshold": 80},
    }
    fields.update(overrides)
    if at is None:
        return raise_alert(**fields)
    with clock.override(lambda: at):
        return raise_alert(**fields)


@pytest.fixture
def admin(api, auth):
    return auth(api, "t-acme", ["tenant_admin"])


def test_get_alert_renders_every_field(admin):
    alert = _alert()
    _alert()
    body = admin.get(f"{URL}/{alert.pk}").json()
    assert body == {
        "alert_id": str(alert.pk),
        "tenant_id": "t-acme",
        "alert_type": "budget_threshold_exceeded",
        "severity": "warning",
        "status": "active",
        "title": "80% of the budget used",
        "message": "b-1 reached 80%",
        "resource_id": "b-1",
        "details": {"threshold": 80},
        "occurrences": 2,
        "first_seen_at": body["first_seen_at"],
        "last_seen_at": body["last_seen_at"],
        "acknowledged_at": None,
        "resolved_at": None,
    }
    assert body["first_seen_at"] <= body["last_seen_at"]


def test_list_filters(admin):
    _alert(at=datetime(2025, 3, 1, tzinfo=UTC))
    _alert(
        at=datetime(2025, 3, 5, tzinfo=UTC),
        alert_type="quota_threshold_warning",
        severity="critical",
        resource_id="q-1",
    )
    _alert(tenant="t-globex")

    def ids(**params):
        return [a["alert_type"] for a in admin.get(URL, params).json()["alerts"]]

    assert ids() == ["quota_threshold_warning", "budget_threshold_exceeded"]
    assert ids(alert_type="quota_threshold_warning") == ["quota_threshold_warning"]
    assert ids(severity="warning") == ["budget_threshold_exceeded"]
    assert ids(status="resolved") == []
    assert ids(start_time="2025-03-02T00:00:00Z") == ["quota_threshold_warning"]
    assert ids(end_time="2025-03-02") == ["budget_threshold_exceeded"]
    assert ids(start_time="2025-03-01", end_time="2025-03-06") == [
        "quota_threshold_warning",
        "budget_threshold_exceeded",
    ]
    for bad in (
        {"alert_type": "nope"},
        {"severity": "high"},
        {"status": "open"},
        {"start_time": "yesterday"},
        {"start_time": "2025-03-02T00:00:00"},
        {"start_time": "2025-03-05", "end_time": "2025-03-01"},
    ):
        _error(admin.get(URL, bad), 400, "VALIDATION_ERROR")


def test_acknowledge_then_resolve_and_invalid_transitions_are_409(admin):
    alert = _alert()
    url = f"{URL}/{alert.pk}"
    body = admin.post(f"{url}/acknowledge").json()
    assert body["status"] == "acknowledged" and body["acknowledged_at"] is not None
    _error(admin.post(f"{url}/acknowledge"), 409, "CONFLICT")
    body = admin.post(f"{url}/resolve").json()
    assert body["status"] == "resolved" and body["resolved_at"] is not None
    _error(admin.post(f"{url}/resolve"), 409, "CONFLICT")
    _error(admin.post(f"{url}/acknowledge"), 409, "CONFLICT")
    row = Alert.objects.get()
    assert (row.status, row.acknowledged_by, row.resolved_by) == (
        "resolved",
        "svc-test",
        "svc-test",
    )
    # Resolved: the same trigger opens a new alert.
    again = _alert()
    assert again.pk != alert.pk and again.occurrences == 1


def test_resolve_straight_from_active(admin):
    alert = _alert()
    assert admin.post(f"{URL}/{alert.pk}/resolve").json()["status"] == "resolved"


def test_unknown_body_field_is_400(admin):
    alert = _alert()
    _error(
        admin.post(f"{URL}/{alert.pk}/acknowledge", {"x": 1}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert Alert.objects.get().status == "active"


@pytest.mark.parametrize("role", ["tenant_admin", "financial_controller", "auditor"])
def test_read_roles(api, auth, role):
    alert = _alert()
    client = auth(api, "t-acme", [role])
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{alert.pk}").status_code == 200


@pytest.mark.parametrize("role", ["tenant_user", "service", "system_architect"])
def test_wrong_roles_cannot_read(api, auth, role):
    alert = _alert()
    client = auth(api, "t-acme", [role])
    _error(client.get(URL), 403, "FORBIDDEN")
    _error(client.get(f"{URL}/{alert.pk}"), 403, "FORBIDDEN")


@pytest.mark.parametrize("role", ["financial_controller", "auditor", "service"])
def test_only_tenant_admin_acts(api, auth, role):
    alert = _alert()
    client = auth(api, "t-acme", [role])
    _error(client.post(f"{URL}/{alert.pk}/acknowledge"), 403, "FORBIDDEN")
    _error(client.post(f"{URL}/{alert.pk}/resolve"), 403, "FORBIDDEN")
    assert Alert.objects.get().status == "active"


def test_anonymous_is_401(api):
    alert = _alert()
    _error(api.get(URL), 401, "UNAUTHORIZED")
    _error(api.get(f"{URL}/{alert.pk}"), 401, "UNAUTHORIZED")
    _error(api.post(f"{URL}/{alert.pk}/acknowledge"), 401, "UNAUTHORIZED")


def test_other_tenant_is_404_by_id_and_403_by_tenant_id(api, auth):
    alert = _alert()
    other = auth(api, "t-globex", ["tenant_admin"])
    _error(other.get(f"{URL}/{alert.pk}"), 404, "NOT_FOUND")
    _error(other.post(f"{URL}/{alert.pk}/acknowledge"), 404, "NOT_FOUND")
    _error(other.post(f"{URL}/{alert.pk}/resolve"), 404, "NOT_FOUND")
    _error(other.get(URL, {"tenant_id": "t-acme"}), 403, "FORBIDDEN")
    assert other.get(URL).json()["alerts"] == []
    assert Alert.objects.get().status == "active"


def test_malformed_id_is_400(api, auth):
    client = auth(api, "t-acme", ["tenant_admin"])
    _error(client.get(f"{URL}/123"), 400, "VALIDATION_ERROR")
    _error(client.post(f"{URL}/123/resolve"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "9999-12-31T23:59:59-01:00"},
        {"end_time": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_an_offset_past_the_calendar_is_400_not_500(admin, params):
    _alert()

    body = _error(admin.get(URL, params), 400, "VALIDATION_ERROR")

    assert list(body["details"]) == list(params)


def test_time_range_offsets_are_compared_in_utc(admin):
    _alert(at=datetime(2025, 1, 1, 10, tzinfo=UTC))

    def count(**params):
        return admin.get(URL, params).json()["pagination"]["total_count"]

    # 10:00Z is 11:00+01:00: [11:00+01:00, ...) includes it, [11:00:01+01:00, ...) does not.
    assert count(start_time="2025-01-01T11:00:00+01:00") == 1
    assert count(start_time="2025-01-01T11:00:01+01:00") == 0


def test_an_alert_sent_back_as_read_is_accepted_and_the_comment_logged(admin, caplog):
    alert = _alert()
    read = admin.get(f"{URL}/{alert.pk}").json()

    with caplog.at_level("INFO", logger="events.services"):
        response = admin.post(
            f"{URL}/{alert.pk}/acknowledge", {**read, "comment": "on it"}, format="json"
        )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "acknowledged"
    (record,) = [r for r in caplog.records if r.getMessage() == "events.alert_transition"]
    assert (record.alert_id, record.status, record.by, record.comment) == (
        str(alert.pk),
        "acknowledged",
        "svc-test",
        "on it",
    )
    alert.refresh_from_db()
    assert (alert.title, alert.occurrences) == ("80% of the budget used", 1)
