import pytest

from events.models import Delivery, Subscription
from events.services import publish_event, relay_outbox
from receipts.models import Receipt

pytestmark = pytest.mark.django_db

URL = "/budget/v1/event-subscriptions"
BODY = {"event_types": ["quota_exhausted"], "webhook_url": "https://hooks.example.com/in"}


def _error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error_code"] == code
    return response.json()


@pytest.fixture
def admin(api, auth):
    return auth(api, "t-acme", ["tenant_admin"])


def _create(client, **overrides):
    response = client.post(URL, {**BODY, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_shows_the_signing_secret_once(admin):
    body = _create(admin, filters={"resource_type": ["gpu"]})
    secret = body.pop("signing_secret")
    assert secret.startswith("whsec_")
    import base64

    assert len(base64.b64decode(secret[6:])) == 32
    assert body == {
        "subscription_id": body["subscription_id"],
        "tenant_id": "t-acme",
        "event_types": ["quota_exhausted"],
        "webhook_url": "https://hooks.example.com/in",
        "filters": {"resource_type": ["gpu"]},
        "enabled": True,
        "disabled_reason": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    got = admin.get(f"{URL}/{body['subscription_id']}").json()
    assert "signing_secret" not in got
    assert got == body
    listed = admin.get(URL).json()
    assert "signing_secret" not in listed["subscriptions"][0]
    # The secret is sealed at rest, not stored in clear.
    row = Subscription.objects.get()
    assert secret not in row.secret_sealed
    # A policy-admin receipt records the change, without the URL.
    receipt = Receipt.objects.get(gate_id="policy-admin")
    assert "hooks.example.com" not in receipt.canonical
    assert body["subscription_id"] in receipt.canonical


def test_unknown_event_type_is_400_and_nothing_is_created(admin):
    body = _error(
        admin.post(URL, {**BODY, "event_types": ["quota_exhausted", "nope"]}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "nope" in body["message"]
    _error(admin.post(URL, {**BODY, "event_types": []}, format="json"), 400, "VALIDATION_ERROR")
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.9.9.9:8080/x",
        "http://10.0.0.1/x",
        "http://172.16.5.4/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[fe80::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://localhost:8000/x",
        "ftp://hooks.example.com/x",
        "not a url",
        "http://user:pw@hooks.example.com/x",
    ],
)
def test_private_loopback_and_odd_urls_are_refused(admin, url):
    _error(admin.post(URL, {**BODY, "webhook_url": url}, format="json"), 400, "VALIDATION_ERROR")
    assert Subscription.objects.count() == 0


def test_private_urls_are_allowed_with_the_setting(admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert _create(admin, webhook_url="http://127.0.0.1:9/x")["webhook_url"] == (
        "http://127.0.0.1:9/x"
    )


def test_unknown_fields_and_bad_filters_are_400(admin):
    _error(admin.post(URL, {**BODY, "colour": "red"}, format="json"), 400, "VALIDATION_ERROR")
    _error(
        admin.post(URL, {**BODY, "filters": {"a": {"b": 1}}}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    _error(admin.post(URL, {**BODY, "filters": {"a": []}}, format="json"), 400, "VALIDATION_ERROR")
    _error(admin.post(URL, {**BODY, "filters": ["a"]}, format="json"), 400, "VALIDATION_ERROR")
    _error(admin.post(URL, "[1,2", content_type="application/json"), 400, "VALIDATION_ERROR")
    assert Subscription.objects.count() == 0


def test_put_is_partial_and_validated(admin):
    created = _create(admin)
    url = f"{URL}/{created['subscription_id']}"
    response = admin.put(url, {"enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert response.json()["event_types"] == ["quota_exhausted"]
    response = admin.put(
        url, {"event_types": ["quota_exhausted", "quota_allocated"]}, format="json"
    )
    assert response.json()["event_types"] == ["quota_allocated", "quota_exhausted"] or (
        response.json()["event_types"] == ["quota_allocated", "quota_exhausted"][::-1]
    )
    before = Subscription.objects.get()
    _error(admin.put(url, {"event_types": ["nope"]}, format="json"), 400, "VALIDATION_ERROR")
    _error(
        admin.put(url, {"webhook_url": "http://10.0.0.1/"}, format="json"), 400, "VALIDATION_ERROR"
    )
    after = Subscription.objects.get()
    assert (after.event_types, after.webhook_url, after.version) == (
        before.event_types,
        before.webhook_url,
        before.version,
    )
    assert admin.patch(url, {"enabled": True}, format="json").json()["enabled"] is True


def test_delete_hides_the_subscription_and_cancels_pending_deliveries(admin, settings):
    created = _create(admin)
    url = f"{URL}/{created['subscription_id']}"
    publish_event(tenant_id="t-acme", event_type="quota_exhausted", payload={})
    relay_outbox(deliver=False)
    assert admin.delete(url).status_code == 204
    _error(admin.get(url), 404, "NOT_FOUND")
    _error(admin.delete(url), 404, "NOT_FOUND")
    assert admin.get(URL).json()["pagination"]["total_count"] == 0
    assert Delivery.objects.get().status == "cancelled"


def test_list_filters_and_pagination(admin):
    _create(admin)
    _create(admin, event_types=["budget_threshold_exceeded"], enabled=False)
    assert admin.get(URL).json()["pagination"] == {
        "page": 1,
        "page_size": 100,
        "total_count": 2,
        "total_pages": 1,
    }
    only = admin.get(URL, {"event_type": "budget_threshold_exceeded"}).json()["subscriptions"]
    assert [s["event_types"] for s in only] == [["budget_threshold_exceeded"]]
    enabled = admin.get(URL, {"enabled": "true"}).json()["subscriptions"]
    assert [s["enabled"] for s in enabled] == [True]
    _error(admin.get(URL, {"event_type": "nope"}), 400, "VALIDATION_ERROR")
    _error(admin.get(URL, {"enabled": "maybe"}), 400, "VALIDATION_ERROR")
    _error(admin.get(URL, {"page_size": 0}), 400, "VALIDATION_ERROR")


def test_deliveries_list_shows_every_attempt(admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    created = _create(admin, webhook_url="http://127.0.0.1:9/never")
    publish_event(tenant_id="t-acme", event_type="quota_exhausted", payload={"quota_id": "q"})
    relay_outbox()
    body = admin.get(f"{URL}/{created['subscription_id']}/deliveries").json()
    assert body["pagination"]["total_count"] == 1
    (delivery,) = body["deliveries"]
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)
    assert [(a["number"], a["outcome"]) for a in delivery["attempts"]] == [(1, "failed")]
    assert (
        admin.get(f"{URL}/{created['subscription_id']}/deliveries", {"status": "delivered"}).json()[
            "deliveries"
        ]
        == []
    )
    _error(
        admin.get(f"{URL}/{created['subscription_id']}/deliveries", {"status": "x"}),
        400,
        "VALIDATION_ERROR",
    )


# --- permission matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_collection_anonymous_is_401(api, method):
    _error(getattr(api, method)(URL, BODY, format="json"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("role", ["tenant_admin", "financial_controller", "auditor"])
def test_read_roles_can_read(api, auth, admin, role):
    created = _create(admin)
    client = auth(api, "t-acme", [role])
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{created['subscription_id']}").status_code == 200
    deliveries = client.get(f"{URL}/{created['subscription_id']}/deliveries")
    assert deliveries.status_code == 200


@pytest.mark.parametrize("role", ["tenant_user", "service", "system_architect"])
def test_other_roles_cannot_read(api, auth, admin, role):
    created = _create(admin)
    client = auth(api, "t-acme", [role])
    _error(client.get(URL), 403, "FORBIDDEN")
    _error(client.get(f"{URL}/{created['subscription_id']}"), 403, "FORBIDDEN")
    _error(client.get(f"{URL}/{created['subscription_id']}/deliveries"), 403, "FORBIDDEN")


@pytest.mark.parametrize("role", ["financial_controller", "auditor", "service", "tenant_user"])
def test_only_tenant_admin_writes(api, auth, admin, role):
    created = _create(admin)
    client = auth(api, "t-acme", [role])
    url = f"{URL}/{created['subscription_id']}"
    _error(client.post(URL, BODY, format="json"), 403, "FORBIDDEN")
    _error(client.put(url, {"enabled": False}, format="json"), 403, "FORBIDDEN")
    _error(client.delete(url), 403, "FORBIDDEN")
    assert Subscription.objects.filter(enabled=True, deleted_at__isnull=True).count() == 1
    assert Subscription.objects.count() == 1


def test_other_tenant_gets_404_by_id_and_403_for_a_foreign_tenant_id(api, auth, admin):
    created = _create(admin)
    url = f"{URL}/{created['subscription_id']}"
    other = auth(api, "t-globex", ["tenant_admin"])
    _error(other.get(url), 404, "NOT_FOUND")
    _error(other.put(url, {"enabled": False}, format="json"), 404, "NOT_FOUND")
    _error(other.delete(url), 404, "NOT_FOUND")
    _error(other.get(f"{url}/deliveries"), 404, "NOT_FOUND")
    assert other.get(URL).json()["subscriptions"] == []
    _error(other.post(URL, {**BODY, "tenant_id": "t-acme"}, format="json"), 403, "FORBIDDEN")
    _error(other.get(URL, {"tenant_id": "t-acme"}), 403, "FORBIDDEN")
    assert Subscription.objects.get().enabled is True


def test_malformed_id_is_400(admin):
    _error(admin.get(f"{URL}/not-a-uuid"), 400, "VALIDATION_ERROR")


def test_nul_characters_are_400_not_500(admin):
    for body in (
        {**BODY, "webhook_url": "https://hooks.example.com/\x00"},
        {**BODY, "filters": {"a": "b\x00"}},
        {**BODY, "filters": {"a\x00": "b"}},
    ):
        _error(admin.post(URL, body, format="json"), 400, "VALIDATION_ERROR")
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/x",  # the resolver's shorthand of 127.0.0.1
        "http://0x7f000001/x",  # hex
        "http://2130706433/x",  # one 32-bit number
        "http://0177.0.0.1/x",  # octal
        "http://10.1/x",
        "http://localhost./x",
        "http://exa mple.com/x",
        "http://example.com/a b",
        "http://example.com/\tx",
        "http://" + "a" * 64 + ".example.com/x",  # a label over 63 characters
        "http://" + "a." * 130 + "com/x",  # a name over 253 characters
        "http://a..b.example.com/x",
    ],
)
def test_disguised_loopback_and_malformed_hosts_are_refused_when_written(admin, url):
    body = _error(
        admin.post(URL, {**BODY, "webhook_url": url}, format="json"), 400, "VALIDATION_ERROR"
    )

    assert list(body["details"]) == ["webhook_url"]
    assert Subscription.objects.count() == 0


def test_a_public_literal_and_an_idn_host_are_accepted(admin):
    assert _create(admin, webhook_url="https://93.184.216.34/in")["webhook_url"] == (
        "https://93.184.216.34/in"
    )
    assert _create(admin, webhook_url="https://bücher.example/in")["webhook_url"] == (
        "https://bücher.example/in"
    )
