"""The operations artifacts under deploy/ are well-formed and name only metrics that exist."""

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

pytestmark = [pytest.mark.system]

# django-prometheus families the rules and the dashboard use.
DJANGO_PROMETHEUS = {
    "django_http_requests_latency_seconds_by_view_method",
    "django_http_responses_total_by_status_view_method_total",
    "django_http_requests_total_by_view_transport_method_total",
    "up",
}


def _known_metrics() -> set[str]:
    from prometheus_client import REGISTRY

    import budgeting_site.platform.metrics  # noqa: F401 - registers the families

    names = set(DJANGO_PROMETHEUS)
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        for sample in family.samples:
            names.add(sample.name)
    for name in list(names):
        names.add(name + "_bucket")
    return names


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers and template vars
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    functions = {
        "histogram_quantile",
        "sum",
        "by",
        "rate",
        "increase",
        "max",
        "clamp_min",
        "and",
        "deriv",
        "le",
        "view",
        "gate",
        "outcome",
        "transition",
        "status",
        "kind",
        "ledger",
        "job",
        "e",
        "instance",
    }
    return {
        w
        for w in words
        if w not in functions and not w.startswith("budgeting:") and not re.fullmatch(r"e\d+", w)
    }


def test_alert_rules_are_complete_and_name_existing_metrics():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    known = _known_metrics()
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) & {"alert", "record"}, rule
            unknown = _metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"]
                alerts[rule["alert"]] = rule
    for needed in (
        "RateLimitCheckP95AboveTarget",
        "BudgetCheckP95AboveTarget",
        "ApiErrorRateHigh",
        "OutboxBacklogGrowing",
        "WebhookDeliveriesDeadLettered",
        "ReconciliationDrift",
    ):
        assert needed in alerts
    assert "events_outbox_backlog" in alerts["OutboxBacklogGrowing"]["expr"]


def test_dashboard_is_valid_grafana_json_over_existing_metrics():
    board = json.loads((DEPLOY / "grafana" / "budgeting-service.json").read_text())
    known = _known_metrics()
    assert board["uid"] == "budgeting-service"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert any("events_outbox_backlog" in e for e in exprs)
    assert any('kind=\\"dead_lettered\\"' in json.dumps(e) for e in exprs)
    for expr in exprs:
        unknown = _metric_names(expr.replace("$__rate_interval", "5m")) - known
        assert not unknown, f"{expr}: {unknown}"


def test_web_and_worker_share_the_metrics_folder():
    # The worker's counters reach the web's /metrics only through one shared folder.
    dockerfile = (REPO / "Dockerfile").read_text()
    folder = re.search(r"^ENV PROMETHEUS_MULTIPROC_DIR=(\S+)$", dockerfile, re.M).group(1)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = {
        name: {v.split(":")[1]: v.split(":")[0] for v in compose["services"][name]["volumes"]}
        for name in ("web", "worker")
    }
    assert mounts["web"][folder] == mounts["worker"][folder]
    assert compose["volumes"][mounts["web"][folder]]["driver_opts"]["type"] == "tmpfs"
