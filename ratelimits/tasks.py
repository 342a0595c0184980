"""Scheduled jobs of the ratelimits app (names pinned in budgeting_site/celery.py)."""

from datetime import timedelta

from celery import shared_task

from budgeting_site.platform import clock
from ratelimits import services


@shared_task(name="ratelimits.drain_receipts")
def drain_receipts() -> int:
    """Sign and store the receipts rate-limit checks left in the store (SPEC 6); safe twice."""
    return services.drain_receipts()


@shared_task(name="ratelimits.adjust_usage_factors")
def adjust_usage_factors() -> int:
    """Set each policy's usage-pattern factor from its recent use (SPEC 3.3); safe twice."""
    changed = services.adjust_usage_factors()
    services.purge_violation_marks(before=clock.now() - timedelta(hours=1))
    return changed
