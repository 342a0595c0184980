"""64 threads consuming one quota on PostgreSQL: never above allocated + burst, the history
sums to used_amount, and the admitted count is exactly what fits."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from quotas import services
from quotas.models import Quota, QuotaUsage
from receipts.models import Receipt
from tests.quotas.conftest import allocate, consume

THREADS = 64


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_64_threads_consuming_one_quota_admit_exactly_what_fits(admin, client_for):
    # 40 allocated + 5 burst = 45; each thread asks for 1 twice → 128 asks, 45 fit.
    created = allocate(admin, allocated_amount=40, max_burst_amount=5)
    barrier = threading.Barrier(THREADS)
    answers: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = client_for("t-acme", ["service"], f"svc-{n}")
        try:
            barrier.wait()
            for _ in range(2):
                response = consume(client, 1, operation_type="thread", resource_id=f"r{n}")
                assert response.status_code == 200, response.content
                with lock:
                    answers.append(response.json())
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    quota = Quota.objects.get(pk=created["quota_id"])
    admitted = [a for a in answers if a["allowed"]]
    assert len(answers) == 2 * THREADS
    assert len(admitted) == 45
    assert quota.used_amount == Decimal(45)
    assert QuotaUsage.objects.filter(quota_id=quota.pk).count() == 45
    assert QuotaUsage.objects.aggregate(s=Sum("amount"))["s"] == quota.used_amount
    # Each admitted answer saw a distinct running total 1..45: no two admitted the same unit.
    assert sorted(int(Decimal(str(a["used_amount"]))) for a in admitted) == list(range(1, 46))
    assert sorted(r.used_after for r in QuotaUsage.objects.all()) == [
        Decimal(i) for i in range(1, 46)
    ]
    assert Receipt.objects.filter(gate_id="quota-management").count() == 1 + 2 * THREADS
    assert services.reconcile()["drifted"] == []


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_check_constraint_stands_behind_the_service():
    from django.db import IntegrityError, transaction
    from django.db.models import F

    quota, _ = services.allocate_quota(
        tenant_id="t-acme",
        actor={"principal": "test"},
        data={
            "resource_type": "x",
            "allocated_amount": Decimal(10),
            "max_burst_amount": Decimal(1),
        },
    )

    with (
        pytest.raises(IntegrityError, match="quota_used_within_allocation_and_burst"),
        transaction.atomic(),
    ):
        Quota.objects.filter(pk=quota.pk).update(used_amount=F("used_amount") + 12)
    assert Quota.objects.get(pk=quota.pk).used_amount == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_allocations_create_exactly_one(client_for):
    # The service's own check cannot see a concurrent insert; the exclusion constraint does.
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = client_for("t-acme", ["tenant_admin"], f"admin-{n}")
        try:
            barrier.wait()
            response = client.post(
                "/budget/v1/quotas/allocate",
                {
                    "resource_type": "gpu",
                    "allocated_amount": 10 + n,
                    "period_start": f"2025-03-0{1 + n % 3}",
                    "period_end": "2025-04-01",
                },
                format="json",
            )
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert sorted(statuses) == [201] + [409] * (threads - 1)
    assert Quota.objects.filter(resource_type="gpu").count() == 1
    assert Receipt.objects.filter(gate_id="quota-management").count() == 1
