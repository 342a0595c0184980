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
def test_metrics_serve_a_scraper_that_accepts_only_text_plain(api, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    response = api.get(
        "/budget/v1/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret", HTTP_ACCEPT="text/plain"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
