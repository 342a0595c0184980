"""GET list / by id, PATCH (PUT as its alias), DELETE."""

import pytest
import time_machine

from quotas.models import Quota
from receipts.models import Receipt
from tests.quotas.conftest import BASE, D, allocate, consume, receipt

pytestmark = pytest.mark.django_db


def url(quota_id: str) -> str:
    return f"{BASE}/quotas/{quota_id}"


def test_get_by_id_renders_every_field(admin):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(
            admin,
            allocated_amount=100,
            max_burst_amount=10,
            period_start="2025-03-01",
            period_end="2025-04-01",
            allocation_type="feature",
            allocated_to_id="f-search",
        )

    body = admin.get(url(created["quota_id"])).json()

    assert body == {
        "quota_id": created["quota_id"],
        "tenant_id": "t-acme",
        "resource_type": "api_calls",
        "allocation_type": "feature",
        "allocated_to_id": "f-search",
        "allocated_amount": 100,
        "used_amount": 0,
        "max_burst_amount": 10,
        "remaining_amount": 110,
        "burst_used": 0,
        "utilization_ratio": 0,
        "period_start": "2025-03-01T00:00:00Z",
        "period_end": "2025-04-01T00:00:00Z",
        "auto_renew": True,
        "renewal_strategy": "same",
        "strategy": None,
        "renewed_from": None,
        "renewed_to": None,
        "created_at": "2025-03-10T00:00:00Z",
        "updated_at": "2025-03-10T00:00:00Z",
        "version": 1,
    }


def test_list_filters_and_pagination(admin):
    with time_machine.travel("2025-03-10T00:00:01Z", tick=False):
        allocate(admin, resource_type="a", period_start="2025-03-01", period_end="2025-04-01")
    with time_machine.travel("2025-03-10T00:00:02Z", tick=False):
        allocate(admin, resource_type="b", period_start="2025-04-01", period_end="2025-05-01")
    with time_machine.travel("2025-03-10T00:00:03Z", tick=False):
        allocate(
            admin,
            resource_type="a",
            allocation_type="user",
            allocated_to_id="u1",
            period_start="2025-03-01",
            period_end="2025-04-01",
        )
    with time_machine.travel("2025-03-10", tick=False):

        def ids(query: str) -> list[tuple[str, str]]:
            body = admin.get(f"{BASE}/quotas{query}").json()
            return [(q["resource_type"], q["allocated_to_id"]) for q in body["quotas"]]

        assert ids("?resource_type=a") == [("a", "u1"), ("a", "t-acme")]
        assert ids("?allocation_type=user") == [("a", "u1")]
        assert ids("?allocated_to_id=t-acme") == [("b", "t-acme"), ("a", "t-acme")]
        assert ids("?active_only=true") == [("a", "u1"), ("a", "t-acme")]
        page = admin.get(f"{BASE}/quotas?page=2&page_size=2").json()
    assert page["pagination"] == {"page": 2, "page_size": 2, "total_count": 3, "total_pages": 2}
    assert len(page["quotas"]) == 1


@pytest.mark.parametrize(
    "query",
    ["?page=0", "?page_size=1001", "?page=x", "?allocation_type=galaxy", "?active_only=perhaps"],
)
def test_bad_list_parameters_are_400(admin, query):
    assert admin.get(f"{BASE}/quotas{query}").status_code == 400


def test_other_tenants_quotas_are_invisible(admin, client_for):
    created = allocate(admin)
    other = client_for("t-globex", ["tenant_admin"])

    assert other.get(f"{BASE}/quotas").json()["pagination"]["total_count"] == 0
    assert other.get(url(created["quota_id"])).status_code == 404
    assert (
        other.patch(url(created["quota_id"]), {"auto_renew": False}, format="json").status_code
        == 404
    )
    assert other.delete(url(created["quota_id"])).status_code == 404
    assert Quota.objects.get().auto_renew is True


def test_malformed_and_unknown_ids(admin):
    assert admin.get(url("not-a-uuid")).status_code == 400
    missing = admin.get(url("00000000-0000-0000-0000-000000000001"))
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "NOT_FOUND"


def test_patch_writes_a_policy_admin_receipt_and_bumps_the_version(admin):
    created = allocate(
        admin, allocated_amount=100, period_start="2025-03-01", period_end="2025-04-01"
    )

    body = admin.patch(
        url(created["quota_id"]),
        {
            "max_burst_amount": 5,
            "auto_renew": False,
            "period_end": "2025-04-15",
            "renewal_strategy": "usage_based",
        },
        format="json",
    ).json()

    assert (
        D(body["max_burst_amount"]),
        body["auto_renew"],
        body["period_end"],
        body["version"],
    ) == (
        5,
        False,
        "2025-04-15T00:00:00Z",
        2,
    )
    assert body["renewal_strategy"] == "usage_based"
    quota = Quota.objects.get()
    assert quota.renewal_due_at.isoformat() == "2025-04-14T00:00:00+00:00"
    signed = [r for r in Receipt.objects.all() if r.gate_id == "policy-admin"]
    assert len(signed) == 1
    assert receipt(str(signed[0].pk))["result"]["after"]["version"] == 2


def test_put_is_an_alias_and_accepts_what_get_returned(admin):
    created = allocate(admin, allocated_amount=100)
    current = admin.get(url(created["quota_id"])).json()

    response = admin.put(
        url(created["quota_id"]), {**current, "allocated_amount": 150}, format="json"
    )

    assert response.status_code == 200
    assert D(response.json()["allocated_amount"]) == 150
    assert response.json()["version"] == 2


def test_stale_version_is_409_and_changes_nothing(admin):
    created = allocate(admin, allocated_amount=100)
    admin.patch(url(created["quota_id"]), {"allocated_amount": 110}, format="json")

    stale = admin.patch(
        url(created["quota_id"]), {"allocated_amount": 120, "version": 1}, format="json"
    )
    stale_header = admin.patch(
        url(created["quota_id"]), {"allocated_amount": 120}, format="json", HTTP_IF_MATCH='"1"'
    )
    fresh = admin.patch(
        url(created["quota_id"]), {"allocated_amount": 130}, format="json", HTTP_IF_MATCH='W/"2"'
    )

    assert stale.status_code == 409
    assert stale.json()["details"]["current_version"] == 2
    assert stale_header.status_code == 409
    assert fresh.status_code == 200
    assert Quota.objects.get().allocated_amount == 130


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource_type": "other"}, "resource_type"),
        ({"allocation_type": "user"}, "allocation_type"),
        ({"period_start": "2025-01-01"}, "period_start"),
        ({"allocated_amount": 0}, "allocated_amount"),
        ({"max_burst_amount": -1}, "max_burst_amount"),
        ({"period_end": "2025-02-01"}, "period_end"),
        ({"wings": True}, "wings"),
    ],
)
def test_invalid_patches_are_400_and_change_nothing(admin, body, field):
    created = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")

    response = admin.patch(url(created["quota_id"]), body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["details"]
    assert Quota.objects.get().version == 1


def test_lowering_below_usage_is_409(admin, svc):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(
            admin, allocated_amount=100, period_start="2025-03-01", period_end="2025-04-01"
        )
        consume(svc, 60)

        response = admin.patch(url(created["quota_id"]), {"allocated_amount": 50}, format="json")
        with_burst = admin.patch(
            url(created["quota_id"]),
            {"allocated_amount": 50, "max_burst_amount": 10},
            format="json",
        )

    assert response.status_code == 409
    assert with_burst.status_code == 200  # 50 + 10 still holds the 60 used
    assert Quota.objects.get().used_amount == 60


def test_extending_into_another_quota_is_409(admin):
    created = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
    allocate(admin, period_start="2025-04-01", period_end="2025-05-01")

    response = admin.patch(url(created["quota_id"]), {"period_end": "2025-04-02"}, format="json")

    assert response.status_code == 409
    assert Quota.objects.get(pk=created["quota_id"]).period_end.month == 4


def test_delete_with_usage_is_409_and_keeps_the_quota(admin, svc):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(admin, period_start="2025-03-01", period_end="2025-04-01")
        consume(svc, 1)

        response = admin.delete(url(created["quota_id"]))

        assert response.status_code == 409
        assert response.json()["error_code"] == "CONFLICT"
        assert admin.get(url(created["quota_id"])).status_code == 200


def test_a_deleted_quota_stops_applying(admin, svc):
    with time_machine.travel("2025-03-10", tick=False):
        created = allocate(
            admin, allocated_amount=1, period_start="2025-03-01", period_end="2025-04-01"
        )
        admin.delete(url(created["quota_id"]))

        answer = svc.post(
            f"{BASE}/quotas/consume", {"resource_type": "api_calls", "amount": 5}, format="json"
        ).json()

    assert answer["quota_id"] is None
    assert Quota.objects.get().deleted_at is not None  # kept for history
    assert admin.delete(url(created["quota_id"])).status_code == 404


@pytest.mark.parametrize("name", ["resource_type", "allocated_to_id"])
def test_nul_in_a_list_filter_is_400_not_500(admin, name):
    allocate(admin)

    response = admin.get(f"{BASE}/quotas", {name: "a\x00b"})

    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert response.json()["details"] == {name: ["Null characters are not allowed."]}


def test_if_match_star_is_no_version_precondition(admin):
    created = allocate(admin, allocated_amount=100)

    response = admin.patch(
        url(created["quota_id"]), {"allocated_amount": 120}, format="json", HTTP_IF_MATCH="*"
    )

    assert response.status_code == 200, response.content
    assert (D(response.json()["allocated_amount"]), response.json()["version"]) == (D(120), 2)
