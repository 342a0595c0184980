"""Checks keep the applicable budget definitions in the process (PostgreSQL) and prove them
current in their own locking statement and again in their write (budgets/services/
_applicable.py): a definition changed anywhere — by this process, another process, or a
write that bypasses the services — decides the very next check. On SQLite nothing is cached;
the same cases run there and must give the same answers."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from budgets import services
from budgets.models import Budget, BudgetPeriod, Reservation
from budgets.services import _applicable
from receipts.models import Receipt
from tests.budgets.conftest import ADMIN, TENANT, check, counters, make_budget

D = Decimal


@pytest.fixture
def other_process(monkeypatch):
    """Budget writes of this process forget its cached definitions after commit; with this
    fixture they do not, as if another process had made them."""
    monkeypatch.setattr(_applicable, "forget", lambda tenant_id=None: None)


def _replace(budget: Budget, **changes) -> Budget:
    data = {
        "budget_name": budget.budget_name,
        "budget_amount": budget.budget_amount,
        "enforcement_action": budget.enforcement_action,
        **changes,
    }
    return services.update_budget(
        tenant_id=budget.tenant_id,
        budget_id=budget.pk,
        data=data,
        version=budget.version,
        actor=ADMIN,
    )


@pytest.mark.django_db
def test_a_replaced_enforcement_decides_the_next_check(frozen, other_process):
    budget = make_budget("100", kind="project", target="p1", action="hard_stop")
    assert check("60", operation_context={"project_id": "p1"})["allowed"] is True
    assert check("60", operation_context={"project_id": "p1"})["allowed"] is False
    _replace(budget, enforcement_action="soft_limit")
    answer = check("60", operation_context={"project_id": "p1"})
    assert answer["allowed"] is True
    assert answer["enforcement_action"] == "soft_limit"
    assert counters(budget) == (D(0), D(120))


@pytest.mark.django_db
def test_a_write_that_bypasses_the_services_is_seen(frozen):
    budget = make_budget("100", kind="project", target="p1", action="soft_limit")
    assert check("150", operation_context={"project_id": "p1"})["allowed"] is True
    # No version bump, no updated_at, no cache invalidation: only the row changed.
    Budget.objects.filter(pk=budget.pk).update(enforcement_action="hard_stop")
    answer = check("1", operation_context={"project_id": "p1"})
    assert answer["allowed"] is False
    assert answer["reason"] == "BUDGET_EXCEEDED"
    assert counters(budget) == (D(0), D(150))


@pytest.mark.django_db
def test_a_new_budget_applies_to_the_next_check(frozen, other_process):
    make_budget("1000", action="soft_limit")
    first = check("10", operation_context={"project_id": "p1"})
    assert first["allowed"] is True
    assert len(first["applied_budgets"]) == 1
    project = make_budget("5", kind="project", target="p1", action="hard_stop")
    answer = check("10", operation_context={"project_id": "p1"})
    assert answer["allowed"] is False
    assert answer["budget_id"] == project.pk
    assert counters(project) == (D(0), D(0))


@pytest.mark.django_db
def test_a_deleted_budget_stops_applying(frozen, other_process):
    tenant = make_budget("1000", action="soft_limit")
    project = make_budget("5", kind="project", target="p1", action="hard_stop")
    assert check("10", operation_context={"project_id": "p1"})["allowed"] is False
    services.delete_budget(tenant_id=TENANT, budget_id=project.pk, force=False, actor=ADMIN)
    answer = check("10", operation_context={"project_id": "p1"})
    assert answer["allowed"] is True
    assert [b["budget_id"] for b in answer["applied_budgets"]] == [tenant.pk]


@pytest.mark.django_db
def test_a_budget_that_ends_stops_applying_without_any_write(frozen):
    end = datetime(2024, 3, 15, 13, 0, tzinfo=UTC)
    make_budget("5", kind="project", target="p1", action="hard_stop", end=end)
    assert check("10", operation_context={"project_id": "p1"})["allowed"] is False
    frozen(end + timedelta(seconds=1))
    answer = check("10", operation_context={"project_id": "p1"})
    assert answer["allowed"] is True
    assert answer["budget_id"] is None
    assert answer["message"] == "No budget applies"


@pytest.mark.django_db
def test_dry_runs_in_a_period_without_rows_and_missing_rates_answer_from_the_cache(frozen):
    budget = make_budget("100", kind="project", target="p1", action="hard_stop")
    for _ in range(2):
        answer = check("30", operation_context={"project_id": "p1"}, dry_run=True)
        assert answer["allowed"] is True
        assert answer["remaining_budget"] == D(100)  # a dry run holds nothing
    assert not BudgetPeriod.objects.filter(budget=budget).exists()
    for _ in range(2):  # no FX rate for EUR: a denial, every time, never a 503
        answer = check("30", operation_context={"project_id": "p1"}, currency="EUR")
        assert answer["allowed"] is False
        assert answer["reason"] == "COST_CALCULATION_ERROR"
    assert check("30", operation_context={"project_id": "p1"})["allowed"] is True
    assert counters(budget) == (D(0), D(30))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_cached_allowed_check_is_two_statements_between_begin_and_commit(frozen, monkeypatch):
    from django.db.backends.postgresql.base import Cursor

    make_budget("1000")
    make_budget("1000", kind="project", target="p1")
    check("1", operation_context={"project_id": "p1"})  # reads and caches the definitions
    sent: list[str] = []
    real_execute = Cursor.execute

    def execute(self, query, params=None, **kwargs):
        sent.append(str(query))
        return real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(Cursor, "execute", execute)  # what reaches the server
    with CaptureQueriesContext(connection) as captured:
        answer = check("1", operation_context={"project_id": "p1"})
    monkeypatch.undo()
    assert answer["allowed"] is True
    logged = [q["sql"] for q in captured.captured_queries]
    assert logged[0] == "BEGIN" and logged[-1] == "COMMIT"
    # The locking SELECT (with the fingerprint), then one statement: the UPDATE, the
    # reservation, its hold lines, the receipt and the fingerprint again as CTEs.
    assert len(sent) == 2, sent
    assert sent[0].startswith("SELECT") and "FOR UPDATE OF p" in sent[0]
    assert sent[1].startswith("WITH u AS (UPDATE")
    assert "AS (INSERT INTO receipts_receipt " in sent[1] and ";" not in sent[1]
    receipt = Receipt.objects.get(receipt_id=answer["receipt_id"])
    assert receipt.as_dict()["result"]["reservation_id"] == str(answer["reservation_id"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_change_committed_while_a_check_waits_for_its_locks_decides_it(other_process):
    """The locking SELECT computes its fingerprint before it waits for the row lock; the
    write computes it again after. A PUT that turns soft_limit into hard_stop and commits while
    the check waits must decide the check (denied), not the definitions it had cached."""
    budget = make_budget("100", kind="project", target="p1", action="soft_limit")
    assert check("90", operation_context={"project_id": "p1"})["allowed"] is True  # cached
    period = BudgetPeriod.objects.get(budget=budget)
    locked = threading.Event()
    release = threading.Event()

    def put() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                # What update_budget's _sync_periods does, held open while the check starts.
                list(BudgetPeriod.objects.select_for_update().filter(pk=period.pk))
                Budget.objects.filter(pk=budget.pk).update(
                    enforcement_action="hard_stop", version=budget.version + 1
                )
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    writer = threading.Thread(target=put)
    writer.start()
    assert locked.wait(10)
    result: dict = {}

    def checker() -> None:
        try:
            result["answer"] = check("20", operation_context={"project_id": "p1"})
        finally:
            connections.close_all()

    reader = threading.Thread(target=checker)
    reader.start()
    # Let the check's locking SELECT start (and block) before the writer commits.
    for _ in range(200):
        if _waiting_for_lock():
            break
        threading.Event().wait(0.01)
    release.set()
    writer.join(10)
    reader.join(20)
    answer = result["answer"]
    assert answer["allowed"] is False
    assert answer["reason"] == "BUDGET_EXCEEDED"
    assert answer["enforcement_action"] == "hard_stop"
    assert counters(budget) == (D(0), D(90))
    assert Reservation.objects.count() == 1


def _waiting_for_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0
