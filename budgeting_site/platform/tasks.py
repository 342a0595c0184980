from celery import shared_task

from budgeting_site.platform import idempotency


@shared_task(name="platform.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()
