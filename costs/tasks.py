"""Scheduled jobs of the costs app (names pinned in budgeting_site/celery.py)."""

from celery import shared_task

from costs import rollups, services


@shared_task(name="costs.write_amortization_slices")
def write_amortization_slices() -> int:
    return len(services.write_amortization_slices())


@shared_task(name="costs.refresh_rollups")
def refresh_rollups() -> int:
    return rollups.refresh_rollups()


@shared_task(name="costs.detect_anomalies")
def detect_anomalies() -> int:
    return services.detect_anomalies()
