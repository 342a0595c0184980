"""The promise under real concurrency on PostgreSQL (SPEC 2.3, 2.5): real threads, real
connections, real row locks. No hold ever takes spent + reserved past a hard_stop amount."""

import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections

from approvals import services as approvals
from approvals.models import ApprovalRequest
from budgets import services, tasks
from budgets.exceptions import BudgetBusy
from budgets.models import BudgetPeriod, Reservation
from events.models import Alert, OutboxEvent
from tests.budgets.conftest import check, counters, make_budget, principal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

D = Decimal


def checked(cost, **fields) -> dict[str, Any]:
    """A client that honours `retriable: true`: a 503 BudgetBusy (contention past 2 s, which a
    loaded 2-core CI box can reach with 64 writers on one row) is retried; it is never a
    decision."""
    for _ in range(50):
        try:
            return check(cost, **fields)
        except BudgetBusy:
            continue
    raise AssertionError("still busy after 50 retries")


def run_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Start n threads at the same instant; return each one's result (or exception)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def runner(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # a failure is a result the test inspects
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


class Watcher(threading.Thread):
    """Samples spent + reserved of the given budgets while the threads run."""

    def __init__(self, budget_ids: list[Any]) -> None:
        super().__init__(daemon=True)
        self.budget_ids = budget_ids
        self.stop = threading.Event()
        self.worst: dict[Any, Decimal] = dict.fromkeys(budget_ids, D(0))
        self.samples = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for row in BudgetPeriod.objects.filter(budget_id__in=self.budget_ids):
                    used = row.spent_amount + row.reserved_amount - row.budget_amount
                    self.worst[row.budget_id] = max(self.worst[row.budget_id], used)
                self.samples += 1
        finally:
            connection.close()


def test_64_threads_against_one_hard_stop_budget_admit_exactly_k(frozen):
    k, cost, per_thread = 37, D("2.5"), 3
    budget = make_budget(k * cost)
    watcher = Watcher([budget.pk])
    watcher.start()

    def work(_: int) -> list[bool]:
        return [checked(cost)["allowed"] for _ in range(per_thread)]

    results = run_threads(64, work)
    watcher.stop.set()
    watcher.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    allowed = sum(sum(r) for r in results)
    assert allowed == k
    assert counters(budget) == (D(0), k * cost)
    assert Reservation.objects.count() == k
    assert watcher.samples > 0
    assert watcher.worst[budget.pk] <= 0


def test_mixed_tenant_and_project_budgets_are_never_over(frozen):
    tenant = make_budget("100")
    p1 = make_budget("60", kind="project", target="p1")
    p2 = make_budget("60", kind="project", target="p2")
    feature = make_budget("45", kind="feature", target="f1")
    soft = make_budget("10", kind="user", target="u1", action="soft_limit")
    watcher = Watcher([tenant.pk, p1.pk, p2.pk, feature.pk])
    watcher.start()

    def work(i: int) -> list[tuple[str, bool]]:
        project = "p1" if i % 2 else "p2"
        context = {"project_id": project}
        if i % 4 == 0:
            context["feature_id"] = "f1"
        if i % 3 == 0:
            context["user_id"] = "u1"
        return [(project, checked("1", operation_context=context)["allowed"]) for _ in range(3)]

    results = run_threads(64, work)
    watcher.stop.set()
    watcher.join()
    assert [r for r in results if isinstance(r, Exception)] == []
    allowed = Counter(project for r in results for project, ok in r if ok)
    assert sum(allowed.values()) == 100  # 192 tries; the tenant budget caps them
    assert counters(tenant) == (D(0), D(100))
    assert counters(p1)[1] == allowed["p1"] <= 60
    assert counters(p2)[1] == allowed["p2"] <= 60
    assert counters(feature)[1] <= 45
    assert counters(soft)[1] > 0
    for budget_id, worst in watcher.worst.items():
        assert worst <= 0, budget_id


def test_20_threads_crossing_80_percent_emit_one_event(frozen):
    budget = make_budget("100", action="soft_limit")
    services.apply_spending(tenant_id="t-acme", amount=D("79"), currency="USD", record_id="r0")

    results = run_threads(20, lambda _: checked("1")["allowed"])

    assert results == [True] * 20
    assert counters(budget) == (D(79), D(20))
    events = Counter(
        __import__("json").loads(e.body)["payload"]["threshold"]
        for e in OutboxEvent.objects.filter(event_type="budget_threshold_exceeded")
    )
    assert events == {"warning_80": 1, "critical_90": 1}
    alerts = Alert.objects.filter(alert_type="budget_threshold_exceeded")
    assert alerts.count() == 2
    assert {a.occurrences for a in alerts} == {1}


def test_an_approval_is_consumed_by_exactly_one_concurrent_check(frozen):
    budget = make_budget("100", action="escalate")
    check("100")
    denied = check("10")
    approvals.approve(
        tenant_id="t-acme",
        approval_id=denied["approval_id"],
        approver=principal(roles=("financial_controller",), sub="fc-1"),
    )
    results = run_threads(12, lambda _: checked("10", approval_id=denied["approval_id"])["allowed"])
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sum(results) == 1
    assert counters(budget) == (D(0), D(110))
    assert ApprovalRequest.objects.get(pk=denied["approval_id"]).status == "consumed"


def test_concurrent_escalations_share_one_pending_request(frozen):
    make_budget("10", action="escalate")
    results = run_threads(16, lambda _: checked("20")["approval_id"])
    assert [r for r in results if isinstance(r, Exception)] == []
    assert len(set(results)) == 1
    assert ApprovalRequest.objects.filter(status="pending").count() == 1


def test_two_sweeps_at_once_expire_each_hold_once(frozen):
    from datetime import UTC, datetime, timedelta

    budget = make_budget("1000")
    for _ in range(10):
        check("5", hold_ttl_seconds=60)
    frozen(datetime(2024, 3, 15, 12, tzinfo=UTC) + timedelta(minutes=5))
    results = run_threads(4, lambda _: tasks.expire_holds())
    assert sum(results) == 10
    assert counters(budget) == (D(50), D(0))


def test_batches_racing_for_the_last_capacity_are_all_or_nothing(frozen):
    budget = make_budget("100")

    def work(_: int) -> bool:
        for _ in range(50):
            try:
                answer = services.check_budget_batch(
                    tenant_id="t-acme",
                    checks=[services.CheckInput(estimated_cost=D(6)) for _ in range(3)],
                    principal=principal(),
                )
                return answer["allowed"]
            except BudgetBusy:
                continue
        raise AssertionError("still busy")

    results = run_threads(16, work)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sum(results) == 5  # 5 x 18 = 90; a sixth batch would need 108
    assert counters(budget) == (D(0), D(90))
    assert Reservation.objects.count() == 15


def test_contention_never_turns_into_a_denial(frozen):
    # Sized for exactly every attempt: any denial here would be a wrong one.
    budget = make_budget("128")
    results = run_threads(64, lambda _: [checked("1")["allowed"] for _ in range(2)])
    assert [r for r in results if isinstance(r, Exception)] == []
    assert all(all(r) for r in results)
    assert counters(budget) == (D(0), D(128))
    assert check("0.0000000001")["allowed"] is False
