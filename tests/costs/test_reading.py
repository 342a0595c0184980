"""Reading (SPEC 4.2): the records list with every filter, aggregates over all matches, groups,
cursor paging, by-id reads, and the route order of the literal paths."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from tests.costs.conftest import BASE, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(frozen):
    record(
        cost_amount="1.00",
        resource_type="llm",
        service_name="chat",
        region="eu",
        attributed_to_type="project",
        attributed_to_id="p1",
        tags={"env": "prod"},
        timestamp="2024-05-01T10:00:00Z",
    )
    record(
        cost_amount="2.00",
        resource_type="llm",
        service_name="search",
        region="us",
        attributed_to_type="project",
        attributed_to_id="p2",
        tags={"env": "dev"},
        timestamp="2024-05-02T10:00:00Z",
    )
    record(
        cost_amount="4.00",
        resource_type="gpu",
        service_name="chat",
        region="eu",
        attributed_to_type="user",
        attributed_to_id="u1",
        tags={"env": "prod", "team": "a"},
        timestamp="2024-05-03T10:00:00Z",
    )
    record(
        cost_amount="8.00",
        resource_type="gpu",
        service_name="train",
        region="us",
        timestamp="2024-05-10T23:59:59Z",
    )
    record(tenant_id="t-globex", cost_amount="100", resource_type="llm")


def total(client, query=""):
    r = client.get(f"{BASE}/records?{query}")
    assert r.status_code == 200, r.content
    return r.json()


@pytest.mark.parametrize(
    ("query", "expected_total", "expected_count"),
    [
        ("", 15, 4),
        ("resource_type=llm", 3, 2),
        ("service_name=chat", 5, 2),
        ("region=us", 10, 2),
        ("attributed_to_type=project", 3, 2),
        ("attributed_to_type=project&attributed_to_id=p2", 2, 1),
        ("tag=env:prod", 5, 2),
        ("tag=env:prod&tag=team:a", 4, 1),
        ("start_time=2024-05-02&end_time=2024-05-03", 2, 1),
        ("start_time=2024-05-02T10:00:00Z", 14, 3),
        ("end_time=2024-05-10T23:59:59Z", 7, 3),
    ],
)
def test_every_filter_narrows_records_and_aggregates(
    svc, data, query, expected_total, expected_count
):
    body = total(svc, query)
    assert body["aggregated"]["total_cost"] == expected_total
    assert body["aggregated"]["record_count"] == expected_count
    assert body["aggregated"]["currency"] == "USD"
    assert body["pagination"]["total_count"] == expected_count
    assert len(body["records"]) == expected_count


def test_root_path_is_the_same_list(svc, data):
    assert svc.get(BASE).json()["aggregated"] == total(svc)["aggregated"]


def test_aggregated_covers_every_match_not_just_the_page(svc, data):
    body = total(svc, "page_size=1")
    assert len(body["records"]) == 1
    assert body["aggregated"]["total_cost"] == 15
    assert body["pagination"] == {"page": 1, "page_size": 1, "total_count": 4, "total_pages": 4}
    assert [r["cost_amount"] for r in body["records"]] == [8]  # newest first


def test_group_by_adds_groups_that_sum_to_the_total(svc, data):
    body = total(svc, "group_by=resource_type,region")
    groups = {(g["resource_type"], g["region"]): g["total_cost"] for g in body["groups"]}
    assert groups == {("gpu", "eu"): 4, ("gpu", "us"): 8, ("llm", "eu"): 1, ("llm", "us"): 2}
    assert sum(D(str(g["total_cost"])) for g in body["groups"]) == 15


def test_cursor_pages_through_every_record_once(svc, data):
    seen = []
    body = total(svc, "page_size=3")
    seen += [r["record_id"] for r in body["records"]]
    assert body["next_cursor"]
    body = total(svc, f"page_size=3&cursor={body['next_cursor']}")
    seen += [r["record_id"] for r in body["records"]]
    assert body["next_cursor"] is None
    assert len(seen) == len(set(seen)) == 4


def test_bad_query_parameters_are_400s(svc, data):
    for query in (
        "start_time=nope",
        "page=0",
        "page_size=1001",
        "cursor=%%%",
        "group_by=colour",
        "tag=novalue",
        "attributed_to_type=team",
        "currency=xx",
        "start_time=2024-05-03&end_time=2024-05-02",
    ):
        r = svc.get(f"{BASE}/records?{query}")
        assert r.status_code == 400, query
        assert r.json()["error_code"] == "VALIDATION_ERROR"


def test_aggregated_in_another_currency_converts_at_each_timestamp(svc, data):
    from costs import services

    services.set_fx_rate(
        base_currency="USD",
        quote_currency="EUR",
        rate=D("0.9"),
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
    )
    services.set_fx_rate(
        base_currency="USD",
        quote_currency="EUR",
        rate=D("0.5"),
        effective_from=datetime(2024, 5, 3, tzinfo=UTC),
    )
    body = total(svc, "currency=EUR")
    assert body["aggregated"]["total_cost"] == 8.7  # 0.9 x 3 + 0.5 x 12
    assert body["aggregated"]["currency"] == "EUR"


def test_missing_rate_for_a_currency_is_a_400_naming_the_pair(svc, data):
    r = svc.get(f"{BASE}/records?currency=GBP")
    assert r.status_code == 400
    assert "USD/GBP" in r.json()["message"]


def test_get_by_id_and_cross_tenant_404(svc, client_for, data):
    mine = record(cost_amount="3")
    got = svc.get(f"{BASE}/{mine.pk}")
    assert got.status_code == 200
    assert got.json()["record_id"] == str(mine.pk)
    assert got.json()["cost_amount"] == 3
    other = client_for("t-globex", ["auditor"])
    assert other.get(f"{BASE}/{mine.pk}").status_code == 404
    assert svc.get(f"{BASE}/{uuid.uuid4()}").status_code == 404
    assert svc.get(f"{BASE}/not-a-uuid").status_code == 400


def test_other_tenants_records_are_never_listed(client_for, data):
    body = total(client_for("t-globex", ["auditor"]))
    assert body["aggregated"]["total_cost"] == 100
    assert {r["tenant_id"] for r in body["records"]} == {"t-globex"}


def test_literal_paths_win_over_record_id(svc, admin, data):
    assert svc.get(f"{BASE}/records").status_code == 200
    assert svc.get(f"{BASE}/reports").status_code == 200
    assert svc.get(f"{BASE}/anomalies").status_code == 200
    assert admin.get(f"{BASE}/allocations").status_code == 405
    assert svc.get(f"{BASE}/record").status_code == 405
    assert svc.get(f"{BASE}/record/batch").status_code == 405
    assert svc.get(f"{BASE}/unknown/thing/deep").status_code == 404
