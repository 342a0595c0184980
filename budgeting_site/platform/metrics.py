"""The project's own Prometheus metrics (SPEC 9). No tenant or resource ids as labels.

With PROMETHEUS_MULTIPROC_DIR set (it must be in the environment before the first metric is
made), every process of a machine writes its values to files in that folder and a scrape of
any web worker reads them all: gunicorn's workers and the Celery worker's processes alike
(docs/scaling.md). Without it (the embedded default, one process) a scrape reads this process.
"""

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
# Set by whichever process ran the job last: across processes, the most recent value counts.
OUTBOX_BACKLOG = Gauge(
    "events_outbox_backlog", "Events not yet relayed", multiprocess_mode="mostrecent"
)
RECONCILIATION_DRIFT = Gauge(
    "reconciliation_drift",
    "Absolute drift found by the last reconciliation",
    ["ledger"],
    multiprocess_mode="mostrecent",
)
JOB_RUNS = Counter("scheduled_job_runs_total", "Scheduled job runs by outcome", ["job", "outcome"])


def exposition() -> bytes:
    """The text of a scrape: every process sharing PROMETHEUS_MULTIPROC_DIR, else this one."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
