"""`GET /health`: a registry of dependency checks. Apps register their own in `ready()`."""

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection

# name → (check, critical). A failing critical check makes the service DOWN, others DEGRADED.
_CHECKS: dict[str, tuple[Callable[[], None], bool]] = {}


def register(name: str, check: Callable[[], None], *, critical: bool = False) -> None:
    _CHECKS[name] = (check, critical)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache() -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=0.25, socket_timeout=0.25
    )
    try:
        client.ping()
    finally:
        client.close()


def _broker() -> None:
    if settings.JOBS_IN_PROCESS:
        return
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=0.5) as conn:
        conn.ensure_connection(max_retries=0, timeout=0.5)


def register_builtin_checks() -> None:
    register("database", _database, critical=True)
    register("cache", _cache)
    register("broker", _broker)


def run_checks() -> dict[str, Any]:
    dependencies: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    status = "UP"
    for name, (check, critical) in _CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            state = "UP"
        except Exception as exc:
            state = "DOWN"
            reasons.append(f"{name}: {type(exc).__name__}")
            if critical:
                status = "DOWN"
            elif status == "UP":
                status = "DEGRADED"
        dependencies[name] = {
            "status": state,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return {"status": status, "dependencies": dependencies, "degraded_reasons": reasons}
