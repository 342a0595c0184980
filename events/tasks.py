"""Celery tasks of the events app (names pinned in budgeting_site/celery.py)."""

from celery import shared_task

from events import services


@shared_task(name="events.relay_outbox")
def relay_outbox() -> dict:
    return services.relay_outbox()


@shared_task(name="events.retry_deliveries")
def retry_deliveries() -> dict:
    return services.retry_deliveries()
