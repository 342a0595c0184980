import time
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_health_is_up(api):
    body = api.get("/budget/v1/health").json()
    assert body["status"] == "UP"
    assert body["dependencies"]["database"]["status"] == "UP"
    assert isinstance(body["dependencies"]["database"]["latency_ms"], float)


@pytest.mark.django_db
def test_health_is_degraded_when_redis_is_unreachable(api, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api.get("/budget/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "DEGRADED"
    assert body["dependencies"]["cache"]["status"] == "DOWN"
    assert body["degraded_reasons"] and body["degraded_reasons"][0].startswith("cache:")


@pytest.mark.django_db
def test_metrics_need_credentials_or_the_scrape_token(api, auth, settings):
    assert api.get("/budget/v1/metrics").status_code == 401
    settings.METRICS_TOKEN = "scrape-secret"
    scraped = api.get("/budget/v1/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert scraped.status_code == 200
    assert b"budget_check_duration_seconds" in scraped.content
    authed = auth(api, "t-acme", ["auditor"]).get("/budget/v1/metrics")
    assert authed.status_code == 200


def test_issue_token_prints_a_working_jwt(capsys):
    from budgeting_site.platform.auth import decode_jwt

    call_command("issue_token", "--tenant", "t-acme", "--roles", "service,auditor", "--ttl", "60")
    claims = decode_jwt(capsys.readouterr().out.strip())
    assert claims["tenant_id"] == "t-acme"
    assert claims["roles"] == ["service", "auditor"]


def test_docker_compose_runs_the_whole_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    assert services["web"]["command"][0] == "gunicorn"
    assert services["worker"]["command"][:4] == ["celery", "-A", "budgeting_site", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "budgeting_site", "beat"]
    assert "--appendonly" in services["redis"]["command"]
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://")
        assert env["DJANGO_DEBUG"] == "false"
        assert services[name]["build"] == "."


def test_beat_schedule_names_only_registered_tasks():
    from budgeting_site.celery import BEAT_SCHEDULE, app

    app.loader.import_default_modules()
    missing = sorted(e["task"] for e in BEAT_SCHEDULE.values() if e["task"] not in app.tasks)
    assert missing == []


@pytest.mark.django_db
def test_every_task_a_celery_worker_runs_is_counted():
    # Counted in the worker's process; with PROMETHEUS_MULTIPROC_DIR the web's /metrics shows
    # it (tests/system/test_metrics.py).
    from prometheus_client import REGISTRY

    from budgeting_site.celery import app

    app.loader.import_default_modules()
    labels = {"job": "platform.purge_idempotency_keys", "outcome": "ok"}
    before = REGISTRY.get_sample_value("scheduled_job_runs_total", labels) or 0
    app.tasks["platform.purge_idempotency_keys"].apply()
    assert REGISTRY.get_sample_value("scheduled_job_runs_total", labels) == before + 1


@pytest.mark.django_db
def test_metrics_serve_a_scraper_that_accepts_only_text_plain(api, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    response = api.get(
        "/budget/v1/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret", HTTP_ACCEPT="text/plain"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_health_check_asks_nothing_of_a_live_connection_and_replaces_a_terminated_one(api):
    from django.db import close_old_connections, connection

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last statement'")
    pid = connection.connection.info.backend_pid
    observer = connection.get_new_connection(connection.get_connection_params())
    observer.autocommit = True
    try:
        assert connection.is_usable()
        # Nothing was sent: the server's last statement of that backend is still ours.
        last = observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        assert last.fetchone()[0] == "SELECT 'the last statement'"

        observer.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while connection.is_usable() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not connection.is_usable()
        # What a served request begins with (the test client leaves it out); then the
        # health check before its first statement replaces the connection.
        close_old_connections()
        response = api.get("/budget/v1/health")
        assert response.status_code == 200
        assert response.json()["dependencies"]["database"]["status"] == "UP"
        assert connection.connection.info.backend_pid != pid
    finally:
        observer.close()


@pytest.mark.postgres
def test_sessions_run_without_the_jit_compiler(db):
    """Every connection of the service has JIT off (reports: half the time, see the backend),
    a new one too."""
    from django.db import connection

    assert connection.settings_dict["ENGINE"] == "budgeting_site.platform.postgresql"
    fresh = connection.copy()
    try:
        for conn in (connection, fresh):
            with conn.cursor() as cursor:
                cursor.execute("SHOW jit")
                assert cursor.fetchone()[0] == "off"
    finally:
        fresh.close()
