import threading
import uuid
from collections import Counter

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from budgeting_site.platform.models import AuditLogEntry, IdempotencyRecord
from budgeting_site.platform.services import create_api_key

pytestmark = [pytest.mark.urls("tests.platform.urls")]

URL = "/budget/v1/_test/widgets"


@pytest.fixture
def admin(api, auth):
    return auth(api, "t-acme", ["tenant_admin"])


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error_code"] == code
    assert body["correlation_id"] == response["X-Correlation-ID"]
    return body


@pytest.mark.django_db
def test_foreign_tenant_in_body_is_403_and_audited(admin):
    response = admin.post(URL, {"tenant_id": "t-globex", "name": "w", "size": 1}, format="json")
    _error(response, 403, "FORBIDDEN")
    entry = AuditLogEntry.objects.get(action="cross_tenant_denied")
    assert (entry.tenant_id, entry.target_tenant_id, entry.path) == ("t-acme", "t-globex", URL)
    assert not AuditLogEntry.objects.filter(action="widget_created").exists()


@pytest.mark.django_db
def test_foreign_tenant_in_query_is_403_and_audited(admin):
    response = admin.post(f"{URL}?tenant_id=t-globex", {"name": "w", "size": 1}, format="json")
    _error(response, 403, "FORBIDDEN")
    assert AuditLogEntry.objects.filter(action="cross_tenant_denied").count() == 1


@pytest.mark.django_db
def test_foreign_tenant_with_unstorable_text_is_403_and_audited_escaped(admin):
    # Found by schemathesis on the real stack: PostgreSQL text cannot hold NUL, UTF-8 cannot
    # encode a lone surrogate; the audit entry was a 500.
    body = b'{"tenant_id": "t-\\u0000glo\\ud800bex"}'
    response = admin.post(URL, body, content_type="application/json")
    _error(response, 403, "FORBIDDEN")
    _error(admin.post(f"{URL}?tenant_id=%00", {}, format="json"), 403, "FORBIDDEN")
    targets = AuditLogEntry.objects.filter(action="cross_tenant_denied").order_by("id")
    assert [e.target_tenant_id for e in targets] == ["t-\\x00glo\\ud800bex", "\\x00"]


@pytest.mark.django_db
def test_own_tenant_named_is_fine(admin):
    response = admin.post(URL, {"tenant_id": "t-acme", "name": "w", "size": 1}, format="json")
    assert response.status_code == 201


@pytest.mark.django_db
def test_foreign_by_id_resource_is_404(admin):
    key, _ = create_api_key(tenant_id="t-globex", name="theirs", roles=["service"], created_by="t")
    _error(admin.get(f"/budget/v1/_test/keys/{key.pk}"), 404, "NOT_FOUND")
    mine, _ = create_api_key(tenant_id="t-acme", name="mine", roles=["service"], created_by="t")
    assert admin.get(f"/budget/v1/_test/keys/{mine.pk}").json()["name"] == "mine"


@pytest.mark.django_db
def test_bad_uuid_in_path_is_400(admin):
    body = _error(admin.get("/budget/v1/_test/keys/not-a-uuid"), 400, "VALIDATION_ERROR")
    assert body["details"] == {"key_id": ["not a valid UUID"]}


@pytest.mark.django_db
def test_malformed_json_is_400(admin):
    response = admin.post(URL, data='{"name": "w", ', content_type="application/json")
    body = _error(response, 400, "VALIDATION_ERROR")
    assert "JSON" in body["message"]


@pytest.mark.django_db
def test_unknown_fields_are_400_naming_them(admin):
    response = admin.post(URL, {"name": "w", "size": 1, "colour": "red", "zz": 1}, format="json")
    body = _error(response, 400, "VALIDATION_ERROR")
    assert body["details"] == {"colour": ["Unknown field"], "zz": ["Unknown field"]}
    assert not AuditLogEntry.objects.filter(action="widget_created").exists()


@pytest.mark.django_db
def test_server_owned_fields_are_ignored(admin):
    response = admin.post(URL, {"name": "w", "size": 1, "id": 5, "created_at": "x"}, format="json")
    assert response.status_code == 201


@pytest.mark.django_db
def test_bad_field_is_400_naming_it(admin):
    body = _error(
        admin.post(URL, {"name": "w", "size": "abc"}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert list(body["details"]) == ["size"]


@pytest.mark.django_db
def test_wrong_media_type_is_415(admin):
    response = admin.post(URL, data="name=w", content_type="application/x-www-form-urlencoded")
    _error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.django_db
def test_unknown_url_and_wrong_method_answer_json(admin):
    _error(admin.get("/budget/v1/no/such/thing"), 404, "NOT_FOUND")
    _error(admin.get(URL), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.django_db
def test_body_over_10_mb_is_413(admin):
    response = admin.generic(
        "POST",
        URL,
        b"x",
        content_type="application/json",
        CONTENT_LENGTH=str(10 * 1024 * 1024 + 1),
    )
    _error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
def test_correlation_id_is_echoed(admin):
    response = admin.post(
        URL, {"name": "w", "size": 1}, format="json", HTTP_X_CORRELATION_ID="abc-1"
    )
    assert response["X-Correlation-ID"] == "abc-1"


@pytest.mark.django_db
def test_idempotent_replay_and_reuse(admin):
    first = admin.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = admin.post(URL, {"size": 1.0, "name": "w"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AuditLogEntry.objects.filter(action="widget_created").count() == 1
    other = admin.post(URL, {"name": "x", "size": 1}, format="json", HTTP_X_IDEMPOTENCY_KEY="k1")
    _error(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert AuditLogEntry.objects.filter(action="widget_created").count() == 1


@pytest.mark.django_db
def test_idempotency_key_is_scoped_by_tenant(api, auth):
    a = auth(APIClient(), "t-acme", ["tenant_admin"])
    b = auth(APIClient(), "t-globex", ["tenant_admin"])
    assert (
        a.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 201
    )
    response = b.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 201 and not response.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_failed_validation_answer_is_kept_but_403_is_not(admin, auth):
    bad = admin.post(URL, {"name": "w", "size": "abc"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert bad.status_code == 400
    assert IdempotencyRecord.objects.filter(key="k2", state="done").count() == 1
    auditor = auth(APIClient(), "t-acme", ["auditor"])
    denied = auditor.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert denied.status_code == 403
    assert not IdempotencyRecord.objects.filter(key="k3").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_idempotency_key_from_16_threads_has_one_effect(make_token):
    token = make_token("t-acme", ["tenant_admin"])
    key = f"race-{uuid.uuid4()}"
    barrier = threading.Barrier(16)
    results: list[tuple[int, str | None, bytes]] = []
    lock = threading.Lock()

    def worker() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        response = client.post(
            URL, {"name": "w", "size": 2}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        with lock:
            results.append(
                (response.status_code, response.get("Idempotent-Replayed"), response.content)
            )
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = Counter(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}
    originals = [r for r in results if r[0] == 201 and r[1] is None]
    assert len(originals) == 1
    replays = [r for r in results if r[0] == 201 and r[1] == "true"]
    assert all(r[2] == originals[0][2] for r in replays)
    assert AuditLogEntry.objects.filter(action="widget_created").count() == 1
    assert IdempotencyRecord.objects.filter(key=key).count() == 1
    assert IdempotencyRecord.objects.get(key=key).state == "done"


def test_a_page_far_past_the_end_is_empty_not_an_error():
    from budgeting_site.platform.pagination import paginate

    class _Req:
        query_params = {"page": "99999999999999999999", "page_size": "1000"}

    body = paginate(_Req(), [1, 2, 3], "items", list)
    assert body == {
        "items": [],
        "pagination": {
            "page": 99999999999999999999,
            "page_size": 1000,
            "total_count": 3,
            "total_pages": 1,
        },
    }


def test_money_is_rendered_exactly_however_many_digits():
    from decimal import Decimal

    from budgeting_site.platform.renderers import dumps

    body = {"a": Decimal("123456789012345678901234.0123456789"), "b": Decimal("0.3800000000")}
    assert dumps(body) == '{"a":123456789012345678901234.0123456789,"b":0.38}'


# --- the pages' middleware (sessions, CSRF, the session's user, messages) stays off the API ----


@pytest.mark.django_db
def test_a_browsers_session_and_csrf_cookies_change_nothing_on_the_api(admin, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-0123456789")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/admin/").status_code == 200  # its sign-out form sets the CSRF cookie
    assert {"sessionid", "csrftoken"} <= set(browser.cookies)
    admin.cookies = browser.cookies
    response = admin.post(URL, {"name": "w", "size": "1"}, format="json")
    assert response.status_code == 201, response.content
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "session")
    # Without a token, the session's user is not the caller: the API still answers 401.
    anonymous = APIClient()
    anonymous.cookies = browser.cookies
    _error(anonymous.post(URL, {"name": "w", "size": "1"}, format="json"), 401, "UNAUTHORIZED")


@pytest.mark.django_db
def test_the_pages_keep_sessions_and_csrf(django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-0123456789")
    browser = Client(enforce_csrf_checks=True)
    assert browser.get("/admin/login/").status_code == 200
    token = browser.cookies["csrftoken"].value
    credentials = {"username": "root", "password": "pw-0123456789"}
    assert browser.post("/admin/login/", credentials).status_code == 403  # no CSRF token
    signed_in = browser.post("/admin/login/", {**credentials, "csrfmiddlewaretoken": token})
    assert signed_in.status_code == 302, signed_in.content
    assert "sessionid" in browser.cookies
    assert browser.get("/admin/").status_code == 200
