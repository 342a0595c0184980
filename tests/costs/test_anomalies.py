"""Anomalies (SPEC 4.4) on synthetic series: a weekly pattern is not an anomaly, a +60 % step
alerts on its third day (not before, and only once), a spike below the impact floor never
alerts."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from budgeting_site.platform import clock
from costs import services
from costs.models import CostAnomaly
from events.models import Alert, OutboxEvent
from tests.costs.conftest import ACTOR, BASE

pytestmark = pytest.mark.django_db

START = date(2024, 1, 1)  # a Monday
STEP = date(2024, 3, 4)  # a Monday, 63 days in


def weekly(day: date, weekday_cost: str, weekend_cost: str) -> D:
    return D(weekday_cost) if day.weekday() < 5 else D(weekend_cost)


def load_series(days: int, step_factor: D = D(1), tiny_spike: D | None = None) -> None:
    items = []
    for i in range(days):
        day = START + timedelta(days=i)
        factor = step_factor if day >= STEP else D(1)
        ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).isoformat()
        items.append(
            {
                "idempotency_key": f"api-{i}",
                "resource_type": "llm",
                "service_name": "api",
                "region": "eu",
                "cost_amount": str(weekly(day, "100", "20") * factor),
                "timestamp": ts,
            }
        )
        tiny = weekly(day, "0.10", "0.02")
        if tiny_spike is not None and day >= STEP:
            tiny = tiny * tiny_spike
        items.append(
            {
                "idempotency_key": f"tiny-{i}",
                "resource_type": "llm",
                "service_name": "batch",
                "region": "tiny",
                "cost_amount": str(tiny),
                "timestamp": ts,
            }
        )
    with clock.override(lambda: datetime(2024, 6, 1, tzinfo=UTC)):
        for start in range(0, len(items), 1000):
            services.record_batch(
                tenant_id="t-acme", items=items[start : start + 1000], actor=ACTOR
            )


def detect(day: date) -> None:
    services.detect_anomalies(
        now=datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC), days=[day]
    )


def test_expected_cost_is_the_weekday_adjusted_mean():
    history = [D(100)] * 30
    assert services.expected_cost(history, [D(100)] * 4) == D(100)
    assert services.expected_cost([D(0)] * 30, [D(0)] * 4) == D(0)
    assert services.expected_cost([D(10), D(30)], [D(30)]) == D(30)


@pytest.mark.parametrize(
    ("deviation", "severity"),
    [
        ("0.10", None),
        ("0.1001", "info"),
        ("-0.25", "info"),
        ("0.2501", "warning"),
        ("-0.5001", "critical"),
        ("0.60", "critical"),
    ],
)
def test_severity_bands(deviation, severity):
    assert services.severity_for(D(deviation)) == severity


def test_a_strong_weekly_pattern_is_not_an_anomaly():
    load_series(63)
    for i in range(31, 63):
        detect(START + timedelta(days=i))
    assert CostAnomaly.objects.count() == 0
    assert Alert.objects.count() == 0


def test_a_60_percent_step_alerts_on_its_third_day_once():
    load_series(STEP.toordinal() - START.toordinal() + 5, step_factor=D("1.6"))
    for i in range(35, 63):
        detect(START + timedelta(days=i))
    assert CostAnomaly.objects.count() == 0

    detect(STEP)
    detect(STEP + timedelta(days=1))
    tenant_rows = CostAnomaly.objects.filter(dimension_type="tenant").order_by("day")
    assert [(a.day, a.consecutive_days, a.severity) for a in tenant_rows] == [
        (STEP, 1, "critical"),
        (STEP + timedelta(days=1), 2, "critical"),
    ]
    first = tenant_rows[0]
    # the tenant total includes the small "tiny" region: 100.10 expected, 160.10 observed
    assert (first.expected_cost, first.observed_cost) == (D("100.1"), D("160.1"))
    assert first.deviation_percentage == D("59.9401")
    assert Alert.objects.count() == 0
    assert not OutboxEvent.objects.filter(event_type="cost_anomaly_detected").exists()

    detect(STEP + timedelta(days=2))
    alerts = Alert.objects.filter(alert_type="cost_anomaly_detected")
    # tenant total, service "api", region "eu": three dimensions, one alert each
    assert sorted(a.resource_id for a in alerts) == ["region:eu", "service:api", "tenant:t-acme"]
    events = OutboxEvent.objects.filter(event_type="cost_anomaly_detected")
    assert events.count() == 3
    assert not alerts.filter(resource_id__startswith="region:tiny").exists()

    detect(STEP + timedelta(days=2))  # the job runs twice
    detect(STEP + timedelta(days=3))  # the streak goes on
    assert events.count() == 3
    tenant_alert = alerts.get(resource_id="tenant:t-acme")
    assert tenant_alert.occurrences == 2
    assert tenant_alert.severity == "critical"


def test_a_spike_below_the_impact_floor_never_alerts():
    load_series(STEP.toordinal() - START.toordinal() + 6, tiny_spike=D(5))
    for i in range(6):
        detect(STEP + timedelta(days=i))
    tiny = CostAnomaly.objects.filter(dimension_type="region", dimension_id="tiny")
    assert tiny.count() == 6
    assert max(a.consecutive_days for a in tiny) == 6
    assert Alert.objects.count() == 0
    assert not OutboxEvent.objects.filter(event_type="cost_anomaly_detected").exists()


def test_the_job_judges_the_last_three_completed_days_by_default():
    load_series(STEP.toordinal() - START.toordinal() + 3, step_factor=D("1.6"))
    services.detect_anomalies(now=datetime(2024, 3, 7, 0, 30, tzinfo=UTC))
    days = sorted(
        set(CostAnomaly.objects.filter(dimension_type="tenant").values_list("day", flat=True))
    )
    assert days == [STEP, STEP + timedelta(days=1), STEP + timedelta(days=2)]
    assert Alert.objects.filter(resource_id="tenant:t-acme").count() == 1


def test_anomalies_are_listed_newest_first(client_for):
    load_series(STEP.toordinal() - START.toordinal() + 3, step_factor=D("1.6"))
    services.detect_anomalies(now=datetime(2024, 3, 7, 0, 30, tzinfo=UTC))
    body = client_for("t-acme", ["tenant_user"]).get(f"{BASE}/anomalies?dimension=tenant").json()
    assert [a["time_period"] for a in body["anomalies"]] == [
        "2024-03-06",
        "2024-03-05",
        "2024-03-04",
    ]
    assert body["anomalies"][0]["severity"] == "critical"
    assert body["pagination"]["total_count"] == 3
    other = client_for("t-globex", ["tenant_user"]).get(f"{BASE}/anomalies").json()
    assert other["anomalies"] == []
