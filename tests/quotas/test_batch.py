"""POST /quotas/allocate/batch: the list form (partial success) and the pool form."""

import pytest
import time_machine

from quotas.models import Quota
from receipts.models import Receipt
from tests.quotas.conftest import BASE, D, allocate, consume, events, post, receipt

pytestmark = pytest.mark.django_db

PERIOD = {"period_start": "2025-03-01", "period_end": "2025-04-01"}


def item(key: str, **fields):
    return {
        "idempotency_key": key,
        "resource_type": "api_calls",
        "allocated_amount": 10,
        **PERIOD,
        **fields,
    }


def test_list_form_partial_success_with_one_receipt(admin):
    allocate(admin, resource_type="taken", **PERIOD)
    body = {
        "allocations": [
            item("k1", allocation_type="user", allocated_to_id="u1"),
            item("k2", resource_type="taken"),  # overlaps the existing quota
            item("k3", allocated_amount=-1),  # invalid
            item("k4", allocation_type="user", allocated_to_id="u2", allocated_amount=20),
        ]
    }

    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 201
    answer = response.json()
    assert (answer["processed_count"], answer["duplicate_count"], answer["failed_count"]) == (
        2,
        0,
        2,
    )
    statuses = [
        (r["index"], r["idempotency_key"], r["status"], r["error_code"]) for r in answer["results"]
    ]
    assert statuses == [
        (0, "k1", "created", None),
        (1, "k2", "failed", "CONFLICT"),
        (2, "k3", "failed", "VALIDATION_ERROR"),
        (3, "k4", "created", None),
    ]
    assert {r["receipt_id"] for r in answer["results"]} == {answer["receipt_id"]}
    signed = receipt(answer["receipt_id"])
    assert [i["index"] for i in signed["result"]["items"]] == [0, 1, 2, 3]
    assert all(i["sha256"].startswith("sha256:") for i in signed["result"]["items"])
    assert Quota.objects.filter(allocation_type="user").count() == 2
    assert len(events("quota_allocated")) == 3  # the first allocate and two batch items


def test_a_repeated_item_returns_its_first_result_as_duplicate(admin):
    body = {"allocations": [item("k1", allocation_type="user", allocated_to_id="u1")]}
    first = post(admin, "/quotas/allocate/batch", body).json()

    second = post(admin, "/quotas/allocate/batch", body).json()

    assert second["results"][0]["status"] == "duplicate"
    assert second["results"][0]["quota_id"] == first["results"][0]["quota_id"]
    assert (second["processed_count"], second["duplicate_count"]) == (0, 1)
    assert Quota.objects.count() == 1


def test_the_same_key_twice_in_one_batch_is_a_duplicate(admin):
    body = {
        "allocations": [
            item("same", allocation_type="user", allocated_to_id="u1"),
            item("same", allocation_type="user", allocated_to_id="u1"),
        ]
    }

    answer = post(admin, "/quotas/allocate/batch", body).json()

    assert [r["status"] for r in answer["results"]] == ["created", "duplicate"]


def test_items_need_an_idempotency_key(admin):
    body = {"allocations": [{"resource_type": "api_calls", "allocated_amount": 1}]}

    answer = post(admin, "/quotas/allocate/batch", body).json()

    assert answer["results"][0]["status"] == "failed"
    assert "idempotency_key" in answer["results"][0]["message"]
    assert Quota.objects.count() == 0


def test_over_100_items_is_413_and_nothing_happens(admin):
    body = {
        "allocations": [
            item(f"k{i}", allocated_to_id=f"u{i}", allocation_type="user") for i in range(101)
        ]
    }

    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert Quota.objects.count() == 0


@pytest.mark.parametrize(
    "body", [{"allocations": []}, {"allocations": "x"}, [1, 2], {"allocations": [1], "x": 1}]
)
def test_malformed_list_form_is_400(admin, body):
    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 400
    assert Quota.objects.count() == 0


def pool(strategy: str, entities, pool_amount=1000, **extra):
    return {
        "resource_type": "gpu_hours",
        "pool_amount": pool_amount,
        "strategy": strategy,
        **PERIOD,
        "entities": entities,
        **extra,
    }


def test_pool_fair_share_1000_over_3_with_one_reserved_100(admin):
    body = pool(
        "fair_share",
        [
            {"allocation_type": "project", "allocated_to_id": "p1", "reserved_amount": 100},
            {"allocation_type": "project", "allocated_to_id": "p2"},
            {"allocation_type": "project", "allocated_to_id": "p3"},
        ],
    )

    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 201
    answer = response.json()
    assert [D(a["allocated_amount"]) for a in answer["allocations"]] == [100, 450, 450]
    assert D(answer["total_allocated"]) == 1000
    stored = {q.allocated_to_id: q.allocated_amount for q in Quota.objects.all()}
    assert stored == {"p1": 100, "p2": 450, "p3": 450}
    assert Quota.objects.get(allocated_to_id="p1").strategy["type"] == "reserved"
    assert Quota.objects.get(allocated_to_id="p2").strategy["type"] == "fair_share"
    assert Receipt.objects.count() == 1
    assert len(receipt(answer["receipt_id"])["result"]["items"]) == 3


def test_pool_priority_tiers_with_uneven_sizes_and_an_empty_tier(admin):
    body = pool(
        "priority",
        [
            {"allocation_type": "project", "allocated_to_id": "a", "tier": 1},
            {"allocation_type": "project", "allocated_to_id": "b", "tier": "tier1"},
            {"allocation_type": "project", "allocated_to_id": "c", "tier": 1},
            {"allocation_type": "project", "allocated_to_id": "d", "tier": 3},
            {"allocation_type": "project", "allocated_to_id": "e", "tier": 3},
        ],
    )

    answer = post(admin, "/quotas/allocate/batch", body).json()

    assert [D(a["allocated_amount"]) for a in answer["allocations"]] == [238, 238, 238, 143, 143]
    assert sum(q.allocated_amount for q in Quota.objects.all()) == 1000


def test_pool_dynamic_from_a_known_history(admin, svc):
    # Last month each project had a quota and used 100, 300 and 0; "new" has no history.
    for name, used in (("a", 100), ("b", 300), ("idle", 0)):
        allocate(
            admin,
            resource_type="gpu_hours",
            allocation_type="project",
            allocated_to_id=name,
            allocated_amount=1000,
            period_start="2025-02-01",
            period_end="2025-03-01",
            auto_renew=False,
        )
        if used:
            with time_machine.travel("2025-02-10", tick=False):
                consume(
                    svc,
                    used,
                    resource_type="gpu_hours",
                    allocation_type="project",
                    allocated_to_id=name,
                )
    body = pool(
        "dynamic",
        [{"allocation_type": "project", "allocated_to_id": n} for n in ("a", "b", "idle", "new")],
        pool_amount=1000,
        period_start="2025-03-01",
        period_end="2025-03-29",  # the same 28 days as February
    )

    with time_machine.travel("2025-03-01", tick=False):
        answer = post(admin, "/quotas/allocate/batch", body).json()

    # needs 1.2 * (100, 300, 0) = 120, 360, 0; "new" takes the mean 160; "idle" gets one unit
    # and 999 is split 120:360:160 → 187.3…, 561.9…, 249.7… → 187, 562, 250.
    assert [D(a["allocated_amount"]) for a in answer["allocations"]] == [187, 562, 1, 250]
    assert D(answer["total_allocated"]) == 1000


def test_pool_is_all_or_nothing_on_an_overlap(admin):
    allocate(
        admin, resource_type="gpu_hours", allocation_type="project", allocated_to_id="p2", **PERIOD
    )
    before = (Quota.objects.count(), Receipt.objects.count(), len(events("quota_allocated")))
    body = pool(
        "fair_share",
        [{"allocation_type": "project", "allocated_to_id": p} for p in ("p1", "p2", "p3")],
    )

    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 409
    assert response.json()["details"]["index"] == 1
    assert (
        Quota.objects.count(),
        Receipt.objects.count(),
        len(events("quota_allocated")),
    ) == before


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": "p"}],
                pool_amount="10.5",
            ),
            400,
            "pool_amount",
        ),
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": f"p{i}"} for i in range(3)],
                pool_amount=2,
            ),
            400,
            "pool_amount",
        ),
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": "p", "reserved_amount": 50}],
                pool_amount=100,
            ),
            400,
            "entities",
        ),
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": "p", "reserved_amount": "1.5"}],
            ),
            400,
            "entities",
        ),
        (
            pool("fair_share", [{"allocation_type": "project", "allocated_to_id": "p"}] * 2),
            400,
            "entities[1]",
        ),
        (pool("fair_share", []), 400, "entities"),
        (
            pool("priority", [{"allocation_type": "project", "allocated_to_id": "p"}]),
            400,
            "entities",
        ),
        (
            pool(
                "priority", [{"allocation_type": "project", "allocated_to_id": "p", "tier": "gold"}]
            ),
            400,
            "entities",
        ),
        (
            pool("round_robin", [{"allocation_type": "project", "allocated_to_id": "p"}]),
            400,
            "strategy",
        ),
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": "p"}],
                tier_shares={"tier9x": 1},
            ),
            400,
            "tier_shares",
        ),
        (
            pool(
                "fair_share",
                [{"allocation_type": "project", "allocated_to_id": f"p{i}"} for i in range(101)],
            ),
            413,
            "entities",
        ),
    ],
)
def test_invalid_pools_are_refused_and_create_nothing(admin, body, status, field):
    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == status, response.content
    assert field in response.json()["details"]
    assert Quota.objects.count() == 0
    assert Receipt.objects.count() == 0


def test_pool_custom_tier_shares(admin):
    body = pool(
        "priority",
        [
            {"allocation_type": "user", "allocated_to_id": "gold", "tier": 1},
            {"allocation_type": "user", "allocated_to_id": "silver", "tier": 2},
        ],
        pool_amount=100,
        tier_shares={"tier1": 75, "tier2": 25},
    )

    answer = post(admin, "/quotas/allocate/batch", body).json()

    assert [D(a["allocated_amount"]) for a in answer["allocations"]] == [75, 25]


def test_pool_idempotency_key_replays(admin):
    body = pool("fair_share", [{"allocation_type": "project", "allocated_to_id": "p1"}])

    first = post(admin, "/quotas/allocate/batch", body, HTTP_IDEMPOTENCY_KEY="pool-1")
    second = post(admin, "/quotas/allocate/batch", body, HTTP_IDEMPOTENCY_KEY="pool-1")

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Quota.objects.count() == 1


def test_a_listed_quota_from_a_pool_shows_its_strategy(admin):
    body = pool("fair_share", [{"allocation_type": "project", "allocated_to_id": "p1"}])
    batch = post(admin, "/quotas/allocate/batch", body).json()

    quota = admin.get(f"{BASE}/quotas/{batch['allocations'][0]['quota_id']}").json()

    assert quota["strategy"] == {"type": "fair_share", "batch_id": batch["batch_id"]}


def test_list_form_null_and_scalar_items_fail_on_their_own(admin):
    body = {"allocations": [item("k1"), None, 7, "x", []]}

    response = post(admin, "/quotas/allocate/batch", body)

    assert response.status_code == 201, response.content
    answer = response.json()
    assert (answer["processed_count"], answer["failed_count"]) == (1, 4)
    assert [(r["index"], r["status"], r["error_code"]) for r in answer["results"]] == [
        (0, "created", None),
        (1, "failed", "VALIDATION_ERROR"),
        (2, "failed", "VALIDATION_ERROR"),
        (3, "failed", "VALIDATION_ERROR"),
        (4, "failed", "VALIDATION_ERROR"),
    ]
    assert Quota.objects.count() == 1


def test_each_batch_item_hash_is_over_its_answer_without_the_receipt_id(admin):
    from decimal import Decimal

    from receipts.canonical import canonical_bytes, sha256_prefixed, to_jsonable

    body = {"allocations": [item("h1"), item("h1"), item("h2", allocated_amount="2.50"), {}]}
    answer = post(admin, "/quotas/allocate/batch", body).json()

    signed = receipt(answer["receipt_id"])["result"]["items"]
    assert [i["index"] for i in signed] == [0, 1, 2, 3]
    for result, entry in zip(answer["results"], signed, strict=True):
        assert result["receipt_id"] == answer["receipt_id"]
        mine = {k: v for k, v in result.items() if k != "receipt_id"}
        if mine["allocated_amount"] is not None:  # amounts are decimal strings in receipts
            mine["allocated_amount"] = Decimal(str(mine["allocated_amount"]))
        assert entry["id"] == result["quota_id"]
        assert entry["sha256"] == sha256_prefixed(canonical_bytes(to_jsonable(mine)))
