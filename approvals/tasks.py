from celery import shared_task

from approvals import services


@shared_task(name="approvals.expire")
def expire() -> int:
    """Approval requests past expires_at become expired (SPEC 2.5); safe to run twice."""
    return services.expire_approvals()
