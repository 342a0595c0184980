"""POST /quotas/consume and /quotas/check: the decision, burst, history, thresholds, receipts."""

import pytest
import time_machine

from events.models import Alert, OutboxEvent
from quotas.models import Quota, QuotaUsage
from receipts.models import Receipt
from tests.quotas.conftest import D, alerts, allocate, consume, events, post, receipt

pytestmark = pytest.mark.django_db

PERIOD = {"period_start": "2025-03-01", "period_end": "2025-04-01"}
NOW = "2025-03-10T12:00:00Z"


@pytest.fixture(autouse=True)
def _in_march():
    with time_machine.travel(NOW, tick=False):
        yield


def test_admitted_consumption_writes_one_history_row_and_a_receipt(admin, svc):
    quota = allocate(admin, allocated_amount=1000, **PERIOD)

    answer = consume(svc, "12.5", operation_type="llm_call", resource_id="req-1").json()

    assert answer["allowed"] is True
    assert D(answer["used_amount"]) == D("12.5")
    assert D(answer["remaining_amount"]) == D("987.5")
    assert D(answer["burst_used"]) == 0
    assert D(answer["utilization_ratio"]) == D("0.0125")
    assert answer["warning_level"] == "normal"
    assert answer["reason"] is None
    assert answer["correlation_id"]
    [row] = QuotaUsage.objects.all()
    assert (str(row.quota_id), row.amount, row.used_after, row.operation_type, row.resource_id) == (
        quota["quota_id"],
        D("12.5"),
        D("12.5"),
        "llm_call",
        "req-1",
    )
    assert str(row.receipt_id) == answer["receipt_id"]
    signed = receipt(answer["receipt_id"])
    assert signed["gate_id"] == "quota-management"
    assert signed["decision"]["status"] == "pass"
    assert signed["inputs"]["amount"] == "12.5"
    assert signed["result"]["used_amount"] == "12.5"
    assert signed["actor"]["principal"] == "svc-1"


def test_burst_admits_past_the_allocation_up_to_allocated_plus_burst(admin, svc):
    allocate(admin, allocated_amount=100, max_burst_amount=20, **PERIOD)

    inside = consume(svc, 110).json()
    at_cap = consume(svc, 10).json()
    over = consume(svc, "0.0000000001").json()

    assert inside["allowed"] is True
    assert D(inside["burst_used"]) == 10
    assert D(inside["utilization_ratio"]) == D("1.1")
    assert D(inside["remaining_amount"]) == 10
    assert receipt(inside["receipt_id"])["decision"]["status"] == "warn"
    assert at_cap["allowed"] is True
    assert at_cap["warning_level"] == "exhausted"
    assert D(at_cap["burst_used"]) == 20
    assert over["allowed"] is False
    assert over["reason"] == "QUOTA_EXHAUSTED"
    assert receipt(over["receipt_id"])["decision"]["status"] == "hard_block"
    assert Quota.objects.get().used_amount == 120
    assert QuotaUsage.objects.count() == 2


def test_a_denied_consumption_changes_nothing_but_leaves_a_receipt(admin, svc):
    allocate(admin, allocated_amount=100, **PERIOD)
    consume(svc, 60)
    before = (
        Quota.objects.get().used_amount,
        QuotaUsage.objects.count(),
        OutboxEvent.objects.count(),
        Alert.objects.count(),
        Receipt.objects.count(),
    )

    answer = consume(svc, 41).json()

    assert answer["allowed"] is False
    assert D(answer["used_amount"]) == 60
    assert (
        Quota.objects.get().used_amount,
        QuotaUsage.objects.count(),
        OutboxEvent.objects.count(),
        Alert.objects.count(),
        Receipt.objects.count(),
    ) == (*before[:4], before[4] + 1)


def test_check_is_a_dry_run(admin, svc):
    allocate(admin, allocated_amount=100, **PERIOD)
    consume(svc, 70)

    fits = post(svc, "/quotas/check", {"resource_type": "api_calls", "amount": 30}).json()
    too_much = post(svc, "/quotas/check", {"resource_type": "api_calls", "amount": 31}).json()
    dry = consume(svc, 30, dry_run=True).json()

    assert fits["allowed"] is True
    assert D(fits["used_amount"]) == 100  # as it would be
    assert too_much["allowed"] is False
    assert D(too_much["used_amount"]) == 70
    assert dry["allowed"] is True
    assert Quota.objects.get().used_amount == 70
    assert QuotaUsage.objects.count() == 1
    assert alerts("quota_threshold_warning") == []
    assert events("quota_exhausted") == []


def test_no_quota_for_the_target_is_allowed_with_quota_id_null(admin, svc):
    allocate(admin, allocated_amount=1, **PERIOD)  # the tenant's, not the user's

    answer = consume(svc, 5, allocation_type="user", allocated_to_id="u1").json()

    assert answer["allowed"] is True
    assert answer["quota_id"] is None
    assert QuotaUsage.objects.count() == 0
    assert receipt(answer["receipt_id"])["decision"]["rationale"] == "no quota for the target"


def test_a_quota_outside_its_period_does_not_apply(admin, svc):
    allocate(admin, allocated_amount=1, period_start="2025-04-01", period_end="2025-05-01")

    answer = consume(svc, 5).json()

    assert answer["quota_id"] is None
    assert answer["allowed"] is True


def test_targets_are_matched_exactly(admin, svc):
    user_quota = allocate(
        admin, allocated_amount=10, allocation_type="user", allocated_to_id="u1", **PERIOD
    )

    answer = consume(svc, 4, allocation_type="user", allocated_to_id="u1").json()

    assert answer["quota_id"] == user_quota["quota_id"]
    assert D(answer["used_amount"]) == 4


def test_warning_alerts_at_80_and_90_percent_once_each(admin, svc):
    quota = allocate(admin, allocated_amount=100, **PERIOD)

    consume(svc, 79)
    assert alerts("quota_threshold_warning") == []
    assert consume(svc, 1).json()["warning_level"] == "warning"  # 80 %
    consume(svc, 5)  # 85 %: nothing new
    assert consume(svc, 5).json()["warning_level"] == "critical"  # 90 %
    consume(svc, 5)

    warnings = alerts("quota_threshold_warning")
    assert [(a.severity, a.details["threshold"], a.occurrences) for a in warnings] == [
        ("warning", 80, 1),
        ("warning", 90, 1),
    ]
    assert {a.resource_id for a in warnings} == {quota["quota_id"]}
    assert [a.dedup_key for a in warnings] == ["2025-03-01T00:00:00Z:80", "2025-03-01T00:00:00Z:90"]


def test_one_jump_past_both_thresholds_raises_both(admin, svc):
    allocate(admin, allocated_amount=100, **PERIOD)

    consume(svc, 95)

    assert sorted(a.details["threshold"] for a in alerts("quota_threshold_warning")) == [80, 90]


def test_quota_exhausted_is_emitted_once_per_period(admin, svc):
    quota = allocate(admin, allocated_amount=100, max_burst_amount=10, **PERIOD)

    consume(svc, 100)
    assert events("quota_exhausted") == []  # burst left
    consume(svc, 10)  # reaches allocated + burst
    consume(svc, 1)  # denied
    consume(svc, 1)  # denied

    [event] = events("quota_exhausted")
    assert event["payload"] == {
        "quota_id": quota["quota_id"],
        "resource_type": "api_calls",
        "used_amount": 110,
        "allocated_amount": 100,
        "max_burst_amount": 10,
        "period_end": "2025-04-01T00:00:00Z",
        "correlation_id": event["payload"]["correlation_id"],
    }
    [alert] = alerts("quota_exhausted")
    assert alert.severity == "critical"
    assert alert.occurrences == 1


def test_each_period_can_be_exhausted_once(admin, svc):
    allocate(admin, allocated_amount=10, **PERIOD)
    allocate(admin, allocated_amount=10, period_start="2025-04-01", period_end="2025-05-01")

    consume(svc, 10)
    with time_machine.travel("2025-04-02", tick=False):
        consume(svc, 10)

    assert len(events("quota_exhausted")) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource_type": "api_calls"}, "amount"),
        ({"resource_type": "api_calls", "amount": 0}, "amount"),
        ({"resource_type": "api_calls", "amount": -1}, "amount"),
        ({"resource_type": "api_calls", "amount": "NaN"}, "amount"),
        ({"resource_type": "api_calls", "amount": "1e400"}, "amount"),
        ({"resource_type": "api_calls", "amount": 1, "allocation_type": "x"}, "allocation_type"),
        ({"resource_type": "api_calls", "amount": 1, "allocation_type": "user"}, "allocated_to_id"),
        ({"resource_type": "api_calls", "amount": 1, "dry_run": "maybe"}, "dry_run"),
        ({"resource_type": "api_calls", "amount": 1, "extra": 1}, "extra"),
        ({"amount": 1}, "resource_type"),
    ],
)
def test_invalid_consumptions_are_400_and_change_nothing(admin, svc, body, field):
    allocate(admin, allocated_amount=100, **PERIOD)

    response = post(svc, "/quotas/consume", body)

    assert response.status_code == 400
    assert field in response.json()["details"]
    assert Quota.objects.get().used_amount == 0
    assert QuotaUsage.objects.count() == 0


def test_a_fractional_consumption_at_the_boundary_is_exact(admin, svc):
    allocate(admin, allocated_amount="0.3", **PERIOD)

    first = consume(svc, "0.1").json()
    second = consume(svc, "0.2").json()
    third = consume(svc, "0.0000000001").json()

    assert (first["allowed"], second["allowed"], third["allowed"]) == (True, True, False)
    assert Quota.objects.get().used_amount == D("0.3")


def test_a_ratio_beyond_28_digits_is_answered_exactly_not_500(admin, svc):
    # 0.0000000001 allocated, a quadrillion of burst: used ÷ allocated = 10^25, which needs
    # 36 digits at 10 places (the default decimal context holds 28).
    quota = allocate(admin, allocated_amount="0.0000000001", max_burst_amount=10**15, **PERIOD)

    response = consume(svc, 10**15)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["allowed"], answer["warning_level"]) == (True, "critical")
    assert D(answer["utilization_ratio"]) == D(10**25)
    assert D(answer["remaining_amount"]) == D("0.0000000001")
    detail = admin.get(f"/budget/v1/quotas/{quota['quota_id']}")
    assert detail.status_code == 200
    assert D(detail.json()["utilization_ratio"]) == D(10**25)
    assert receipt(answer["receipt_id"])["result"]["utilization_ratio"] == "1" + "0" * 25


def test_no_quota_answer_has_every_field_of_the_answer_as_null(svc):
    answer = consume(svc, 3).json()

    assert {k: v for k, v in answer.items() if k not in ("receipt_id", "correlation_id")} == {
        "allowed": True,
        "quota_id": None,
        "used_amount": None,
        "allocated_amount": None,
        "max_burst_amount": None,
        "remaining_amount": None,
        "burst_used": None,
        "utilization_ratio": None,
        "warning_level": None,
        "period_end": None,
        "reason": None,
    }
