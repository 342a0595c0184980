"""Renewal (SPEC 5): at period_end - min(24 h, half the period), exactly once, late or twice."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from budgeting_site.celery import app as celery_app
from quotas import services, tasks
from quotas.models import Quota
from tests.quotas.conftest import D, alerts, allocate, consume, events, receipt

MARCH = {"period_start": "2025-03-01", "period_end": "2025-03-31"}  # 30 days


def at(text: str):
    return time_machine.travel(text, tick=False)


def chain(first_id: str) -> list[Quota]:
    quotas = [Quota.objects.get(pk=first_id)]
    while True:
        nxt = Quota.objects.filter(renewed_from=quotas[-1].pk).first()
        if nxt is None:
            return quotas
        quotas.append(nxt)


@pytest.mark.django_db
def test_renews_at_period_end_minus_24_hours_into_the_next_period_of_the_same_length(admin):
    with at("2025-03-01"):
        first = allocate(admin, allocated_amount=1000, max_burst_amount=50, **MARCH)

    with at("2025-03-29T23:59:59Z"):
        assert services.renew_due() == {"renewed": 0, "failed": 0}
    with at("2025-03-30T00:00:00Z"):
        assert services.renew_due() == {"renewed": 1, "failed": 0}

    old, new = chain(first["quota_id"])
    assert old.renewed_to == new.pk
    assert new.renewed_from == old.pk
    assert (new.period_start, new.period_end) == (
        datetime(2025, 3, 31, tzinfo=UTC),
        datetime(2025, 4, 30, tzinfo=UTC),
    )
    assert (new.allocated_amount, new.max_burst_amount, new.used_amount) == (1000, 50, 0)
    assert (new.resource_type, new.allocation_type, new.allocated_to_id) == (
        old.resource_type,
        old.allocation_type,
        old.allocated_to_id,
    )
    assert new.renewal_due_at == datetime(2025, 4, 29, tzinfo=UTC)
    renewal_event = events("quota_allocated")[-1]["payload"]
    assert renewal_event["quota_id"] == str(new.pk)
    assert renewal_event["renewed_from"] == str(old.pk)
    assert renewal_event["period_start"] == "2025-03-31T00:00:00Z"


@pytest.mark.django_db
def test_a_short_period_renews_at_its_half(admin):
    with at("2025-03-01T00:00:00Z"):
        first = allocate(
            admin,
            allocated_amount=5,
            period_start="2025-03-01T00:00:00Z",
            period_end="2025-03-01T10:00:00Z",
        )
    with at("2025-03-01T04:59:59Z"):
        services.renew_due()
    assert len(chain(first["quota_id"])) == 1
    with at("2025-03-01T05:00:00Z"):
        services.renew_due()

    _, new = chain(first["quota_id"])
    assert (new.period_start, new.period_end) == (
        datetime(2025, 3, 1, 10, tzinfo=UTC),
        datetime(2025, 3, 1, 20, tzinfo=UTC),
    )


@pytest.mark.django_db
def test_running_the_job_again_creates_nothing_more(admin):
    with at("2025-03-01"):
        first = allocate(admin, **MARCH)
    with at("2025-03-30T01:00:00Z"):
        services.renew_due()
        services.renew_due()
        tasks.renew_due()

    assert len(chain(first["quota_id"])) == 2
    assert Quota.objects.count() == 2


@pytest.mark.django_db
def test_a_late_job_creates_each_missed_period_once(admin):
    with at("2025-03-01"):
        first = allocate(
            admin, allocated_amount=7, period_start="2025-03-01", period_end="2025-03-02"
        )

    # Down for four days: at 12:00 on the 5th the quotas of the 2nd … 6th are due or past due.
    with at("2025-03-05T12:00:00Z"):
        outcome = services.renew_due()
    with at("2025-03-05T13:00:00Z"):
        again = services.renew_due()

    quotas = chain(first["quota_id"])
    assert outcome == {"renewed": 5, "failed": 0}
    assert again == {"renewed": 0, "failed": 0}
    assert [q.period_start.day for q in quotas] == [1, 2, 3, 4, 5, 6]
    assert all(q.allocated_amount == 7 for q in quotas)
    assert Quota.objects.count() == 6


@pytest.mark.django_db
def test_usage_based_renewal_lowers_the_amount_and_reports_the_saving(admin, svc):
    with at("2025-03-01"):
        first = allocate(admin, allocated_amount=1000, renewal_strategy="usage_based", **MARCH)
    with at("2025-03-15"):
        consume(svc, 500)

    # 29 of 30 days seen: 500 * 30/29 = 517.24… projected, * 1.2 = 620.7 → 621 whole units.
    with at("2025-03-30"):
        services.renew_due()

    _, new = chain(first["quota_id"])
    assert new.allocated_amount == 621
    assert new.renewal_strategy == "usage_based"
    [event] = events("resource_usage_optimized")
    assert event["payload"]["quota_id"] == str(new.pk)
    assert D(event["payload"]["previous_amount"]) == 1000
    assert D(event["payload"]["new_amount"]) == 621
    assert D(event["payload"]["estimated_savings"]) == 379
    from receipts.models import Receipt

    renewal = receipt(
        str(
            Receipt.objects.filter(gate_id="quota-management").order_by("-timestamp_utc").first().pk
        )
    )
    assert renewal["inputs"]["operation"] == "renew"
    assert renewal["inputs"]["basis"] == "usage"
    assert renewal["result"]["allocated_amount"] == "621"
    assert renewal["actor"]["principal"] == "system:quotas.renew_due"


@pytest.mark.django_db
def test_usage_based_renewal_may_raise_the_amount_without_an_optimization_event(admin, svc):
    with at("2025-03-01"):
        first = allocate(admin, allocated_amount=100, renewal_strategy="usage_based", **MARCH)
    with at("2025-03-15"):
        consume(svc, 100)

    with at("2025-03-30"):
        services.renew_due()

    assert chain(first["quota_id"])[1].allocated_amount == 125  # 100 * 30/29 * 1.2 = 124.1 → 125
    assert events("resource_usage_optimized") == []


@pytest.mark.django_db
def test_quotas_not_auto_renewing_or_deleted_are_left_alone(admin):
    with at("2025-03-01"):
        allocate(admin, auto_renew=False, **MARCH)
        gone = allocate(admin, resource_type="gone", **MARCH)
        admin.delete(f"/budget/v1/quotas/{gone['quota_id']}")

    with at("2025-04-15"):
        assert services.renew_due() == {"renewed": 0, "failed": 0}
    assert Quota.objects.count() == 2


@pytest.mark.django_db
def test_three_failed_attempts_raise_a_renewal_failed_alert(admin):
    with at("2025-03-01"):
        first = allocate(admin, **MARCH)
        # Someone allocated part of April by hand: the successor cannot be created.
        allocate(admin, period_start="2025-04-10", period_end="2025-04-20")

    for attempt, when in enumerate(("2025-03-30T00:00Z", "2025-03-30T00:05Z"), start=1):
        with at(when):
            assert services.renew_due() == {"renewed": 0, "failed": 1}
        assert Quota.objects.get(pk=first["quota_id"]).renewal_attempts == attempt
    assert alerts("renewal_failed") == []

    with at("2025-03-30T00:10Z"):
        services.renew_due()

    [alert] = alerts("renewal_failed")
    quota = Quota.objects.get(pk=first["quota_id"])
    assert quota.renewal_attempts == 3
    assert quota.renewed_to is None
    assert "overlapping" in quota.renewal_last_error
    assert alert.resource_id == first["quota_id"]
    assert alert.severity == "critical"
    assert alert.details["attempts"] == 3
    assert Quota.objects.count() == 2  # nothing half-made


@pytest.mark.django_db
def test_the_beat_names_the_pinned_tasks():
    assert "quotas.renew_due" in celery_app.tasks
    assert "quotas.reconcile" in celery_app.tasks


def _run_at_once(threads: int, when: str) -> list[BaseException]:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            services.renew_due()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    with at(when):  # time-machine moves the clock of every thread
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_jobs_at_once_create_exactly_one_successor_per_period(admin):
    with at("2025-03-01"):
        monthly = allocate(admin, **MARCH)
        daily = allocate(
            admin, resource_type="daily", period_start="2025-03-26", period_end="2025-03-27"
        )

    # The monthly quota is due; the daily one is late, with four missed periods to catch up.
    errors = _run_at_once(2, "2025-03-30T00:00:00Z")

    assert errors == []
    assert len(chain(monthly["quota_id"])) == 2
    dailies = chain(daily["quota_id"])
    assert [q.period_start.day for q in dailies] == [26, 27, 28, 29, 30]
    assert Quota.objects.filter(resource_type="daily").count() == 5
    assert len(events("quota_allocated")) == 2 + 1 + 4
    assert Quota.objects.get(pk=monthly["quota_id"]).renewal_attempts == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_jobs_at_once_still_renew_once(admin):
    with at("2025-03-01"):
        first = allocate(admin, **MARCH)

    errors = _run_at_once(8, "2025-03-30T06:00:00Z")

    assert errors == []
    assert len(chain(first["quota_id"])) == 2
    assert Quota.objects.count() == 2
    assert Quota.objects.get(pk=first["quota_id"]).renewal_attempts == 0


@pytest.mark.django_db
def test_renew_now_forces_an_early_renewal_once(admin):
    with at("2025-03-01"):
        first = allocate(admin, auto_renew=False, **MARCH)
    actor = {"principal": "user:ops", "credential_id": "", "instance": "test"}

    with at("2025-03-05"):
        new = services.renew_quota(quota_id=first["quota_id"], actor=actor, force=True)
        again = services.renew_quota(quota_id=first["quota_id"], actor=actor, force=True)

    assert new is not None and again is None
    assert new.period_start == datetime(2025, 3, 31, tzinfo=UTC)
    assert new.period_end - new.period_start == timedelta(days=30)
