"""Scheduled jobs of the quotas app (names pinned in budgeting_site/celery.py)."""

import logging
from typing import Any

from celery import shared_task

from quotas import services

logger = logging.getLogger(__name__)


@shared_task(name="quotas.renew_due")
def renew_due() -> dict[str, Any]:
    """Renew every quota due for renewal; safe to run twice at once or late."""
    try:
        return services.renew_due()
    except Exception:
        logger.exception("quotas.renew_due_failed")
        raise


@shared_task(name="quotas.reconcile")
def reconcile() -> dict[str, Any]:
    """Compare quota counters with their usage history; drift is a metric and an alert."""
    try:
        outcome = services.reconcile()
    except Exception:
        logger.exception("quotas.reconcile_failed")
        raise
    return {"checked": outcome["checked"], "drifted": len(outcome["drifted"])}
