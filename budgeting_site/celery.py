"""The Celery app and the beat schedule (SPEC 9). Task names are pinned strings, so this module
imports no domain app. Every job is safe to run twice or late."""

import os
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "budgeting_site.settings")

app = Celery("budgeting_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    broker_connection_timeout=1,
    broker_connection_retry_on_startup=True,
    # The after-commit nudge is best effort: one quick try, never a slow request.
    broker_transport_options={"max_retries": 0, "socket_timeout": 1, "socket_connect_timeout": 1},
    result_backend=None,
    task_ignore_result=True,
    timezone="UTC",
)
app.autodiscover_tasks(lambda: __import__("django.conf").conf.settings.INSTALLED_APPS)

BEAT_SCHEDULE = {
    # The outbox relay is the delivery guarantee; the after-commit nudge only makes it sooner.
    "events.relay_outbox": {"task": "events.relay_outbox", "schedule": timedelta(seconds=5)},
    # Webhook retries come due on their own backoff clock.
    "events.retry_deliveries": {
        "task": "events.retry_deliveries",
        "schedule": timedelta(seconds=15),
    },
    # Rate-limit receipts are signed off the request path; SPEC 6 wants them within 5 s.
    "ratelimits.drain_receipts": {
        "task": "ratelimits.drain_receipts",
        "schedule": timedelta(seconds=1),
    },
    # Usage-pattern factors follow traffic, not seconds.
    "ratelimits.adjust_usage_factors": {
        "task": "ratelimits.adjust_usage_factors",
        "schedule": timedelta(minutes=5),
    },
    # Expired holds free (or commit) capacity; checks also expire the holds they meet.
    "budgets.expire_holds": {"task": "budgets.expire_holds", "schedule": timedelta(seconds=30)},
    # Forecast crossings are detected on a schedule; they move slowly.
    "budgets.check_forecasts": {
        "task": "budgets.check_forecasts",
        "schedule": timedelta(minutes=15),
    },
    # Approvals expire approval_timeout_hours after they were made.
    "approvals.expire": {"task": "approvals.expire", "schedule": timedelta(minutes=1)},
    # Quotas renew min(24 h, half a period) before they end, so check often.
    "quotas.renew_due": {"task": "quotas.renew_due", "schedule": timedelta(minutes=5)},
    # Amortized costs: each day's slice is written on that day.
    "costs.write_amortization_slices": {
        "task": "costs.write_amortization_slices",
        "schedule": timedelta(hours=1),
    },
    # Rollups are kept current on write; this job repairs any day that drifted.
    "costs.refresh_rollups": {"task": "costs.refresh_rollups", "schedule": timedelta(hours=1)},
    # Anomalies are judged on whole UTC days, just after midnight.
    "costs.detect_anomalies": {
        "task": "costs.detect_anomalies",
        "schedule": crontab(minute=30, hour=0),
    },
    # Ledgers against counters: drift is a metric and an alert.
    "budgets.reconcile": {"task": "budgets.reconcile", "schedule": timedelta(minutes=30)},
    "quotas.reconcile": {"task": "quotas.reconcile", "schedule": timedelta(minutes=30)},
    # Expired idempotency keys are only storage.
    "platform.purge_idempotency_keys": {
        "task": "platform.purge_idempotency_keys",
        "schedule": timedelta(hours=1),
    },
}
app.conf.beat_schedule = BEAT_SCHEDULE


@task_postrun.connect
def count_job_run(sender: Any = None, state: str | None = None, **_: Any) -> None:
    """Every task a worker process runs counts in scheduled_job_runs_total, as the in-process
    scheduler counts its own (with PROMETHEUS_MULTIPROC_DIR, the web's /metrics shows both)."""
    from budgeting_site.platform.metrics import JOB_RUNS

    JOB_RUNS.labels(
        getattr(sender, "name", "unknown"), "ok" if state == "SUCCESS" else "error"
    ).inc()
