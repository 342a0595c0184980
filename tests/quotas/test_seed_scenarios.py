"""The original tests of the seed's system, replayed as API calls."""

import pytest

from tests.quotas.conftest import BASE, D, allocate, consume

pytestmark = pytest.mark.django_db


def test_allocate_1000_starts_with_nothing_used(admin):
    created = allocate(admin, allocated_amount=1000)

    assert D(created["allocated_amount"]) == 1000
    quota = admin.get(f"{BASE}/quotas/{created['quota_id']}").json()
    assert D(quota["used_amount"]) == 0
    assert D(quota["allocated_amount"]) == 1000


def test_consume_100_of_1000_is_allowed(admin, svc):
    created = allocate(admin, allocated_amount=1000)

    answer = consume(svc, 100).json()

    assert answer["allowed"] is True
    assert answer["quota_id"] == created["quota_id"]
    assert D(answer["used_amount"]) == 100
    assert D(answer["remaining_amount"]) == 900


def test_allocate_100_consume_100_then_1_is_denied(admin, svc):
    allocate(admin, allocated_amount=100)

    first = consume(svc, 100).json()
    second = consume(svc, 1).json()

    assert first["allowed"] is True
    assert second["allowed"] is False
    assert second["reason"] == "QUOTA_EXHAUSTED"
    assert D(second["used_amount"]) == 100
    assert D(second["remaining_amount"]) == 0


def test_list_returns_three_quotas(admin):
    for resource in ("api_calls", "storage_gb", "gpu_hours"):
        allocate(admin, resource_type=resource)

    listing = admin.get(f"{BASE}/quotas").json()

    assert listing["pagination"]["total_count"] == 3
    assert [q["resource_type"] for q in listing["quotas"]] == [
        "gpu_hours",
        "storage_gb",
        "api_calls",
    ]


def test_partial_update_changes_only_the_given_field(admin):
    created = allocate(admin, allocated_amount=1000, max_burst_amount=50)

    response = admin.patch(
        f"{BASE}/quotas/{created['quota_id']}", {"allocated_amount": 2000}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert D(body["allocated_amount"]) == 2000
    assert D(body["max_burst_amount"]) == 50
    assert body["version"] == 2


def test_delete_unused_quota(admin):
    created = allocate(admin)

    response = admin.delete(f"{BASE}/quotas/{created['quota_id']}")

    assert response.status_code == 204
    assert admin.get(f"{BASE}/quotas/{created['quota_id']}").status_code == 404
    assert admin.get(f"{BASE}/quotas").json()["pagination"]["total_count"] == 0
