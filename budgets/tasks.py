"""Scheduled jobs of the budgets app (names pinned in budgeting_site/celery.py)."""

from celery import shared_task

from budgets import services


@shared_task(name="budgets.expire_holds")
def expire_holds() -> int:
    """Overdue open holds are committed at their estimate (or released); safe to run twice."""
    return services.expire_overdue(limit=5000)


@shared_task(name="budgets.check_forecasts")
def check_forecasts() -> int:
    """Emit budget_forecast_exceeded once per budget and period."""
    return services.check_forecasts()


@shared_task(name="budgets.reconcile")
def reconcile() -> dict:
    """Counters against ledgers: drift is a metric, an alert, and repaired."""
    return services.reconcile()
