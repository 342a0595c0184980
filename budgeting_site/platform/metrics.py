"""The project's own Prometheus metrics (SPEC 9). No tenant or resource ids as labels."""

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

BUDGET_CHECK_DURATION = Histogram(
    "budget_check_duration_seconds", "Time to decide a budget check", buckets=_LATENCY_BUCKETS
)
RATE_LIMIT_CHECK_DURATION = Histogram(
    "rate_limit_check_duration_seconds",
    "Time to decide a rate-limit check",
    buckets=_LATENCY_BUCKETS,
)
DECISIONS = Counter("decisions_total", "Decisions by gate and outcome", ["gate", "outcome"])
HOLDS = Counter("budget_holds_total", "Budget holds by transition", ["transition"])
EVENTS_DELIVERED = Counter("events_delivered_total", "Webhook deliveries that succeeded")
EVENTS_FAILED = Counter("events_failed_total", "Webhook delivery attempts that failed", ["kind"])
OUTBOX_BACKLOG = Gauge("events_outbox_backlog", "Events not yet relayed")
RECONCILIATION_DRIFT = Gauge(
    "reconciliation_drift", "Absolute drift found by the last reconciliation", ["ledger"]
)
JOB_RUNS = Counter("scheduled_job_runs_total", "Scheduled job runs by outcome", ["job", "outcome"])
