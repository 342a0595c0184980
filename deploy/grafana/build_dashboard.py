"""Writes budgeting-service.json, the Grafana dashboard.

Run: python deploy/grafana/build_dashboard.py

The JSON is committed; this script is how it is changed, so panels stay consistent."""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
_ids = iter(range(1, 1000))


def panel(
    title,
    targets,
    x,
    y,
    w=12,
    h=8,
    unit="short",
    kind="timeseries",
    thresholds=None,
    description="",
):
    p = {
        "id": next(_ids),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": thresholds or [{"color": "green", "value": None}],
                },
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    return p


def row(title, y):
    return {
        "id": next(_ids),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def q(name, quantile):
    return (
        f"histogram_quantile({quantile}, sum by (le) (rate({name}_bucket[$__rate_interval])))",
        f"p{int(quantile * 100)}",
    )


RED = [{"color": "green", "value": None}, {"color": "red", "value": 0.0000001}]
panels = [
    row("Decisions", 0),
    panel(
        "Rate-limit check latency (target p95 < 2 ms)",
        [
            q("rate_limit_check_duration_seconds", 0.5),
            q("rate_limit_check_duration_seconds", 0.95),
            q("rate_limit_check_duration_seconds", 0.99),
        ],
        0,
        1,
        unit="s",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.002}],
    ),
    panel(
        "Budget check latency (target p95 < 5 ms)",
        [
            q("budget_check_duration_seconds", 0.5),
            q("budget_check_duration_seconds", 0.95),
            q("budget_check_duration_seconds", 0.99),
        ],
        12,
        1,
        unit="s",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.005}],
    ),
    panel(
        "Decisions by gate and outcome",
        [
            (
                "sum by (gate, outcome) (rate(decisions_total[$__rate_interval]))",
                "{{gate}} {{outcome}}",
            )
        ],
        0,
        9,
        unit="reqps",
    ),
    panel(
        "Budget holds by transition",
        [("sum by (transition) (rate(budget_holds_total[$__rate_interval]))", "{{transition}}")],
        12,
        9,
        unit="ops",
    ),
    row("HTTP", 17),
    panel(
        "Requests by view",
        [
            (
                "sum by (view) (rate(django_http_requests_total_by_view_transport_method_total"
                "[$__rate_interval]))",
                "{{view}}",
            )
        ],
        0,
        18,
        unit="reqps",
    ),
    panel(
        "Responses by status",
        [
            (
                "sum by (status) (rate(django_http_responses_total_by_status_view_method_total"
                "[$__rate_interval]))",
                "{{status}}",
            )
        ],
        12,
        18,
        unit="reqps",
    ),
    panel(
        "5xx ratio",
        [
            (
                'sum(rate(django_http_responses_total_by_status_view_method_total{status=~"5.."}'
                "[$__rate_interval])) / clamp_min(sum(rate("
                "django_http_responses_total_by_status_view_method_total"
                "[$__rate_interval])), 1e-9)",
                "5xx",
            )
        ],
        0,
        26,
        unit="percentunit",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.01}],
    ),
    panel(
        "Request latency p95 by view",
        [
            (
                "histogram_quantile(0.95, sum by (le, view) (rate("
                "django_http_requests_latency_seconds_by_view_method_bucket[$__rate_interval])))",
                "{{view}}",
            )
        ],
        12,
        26,
        unit="s",
    ),
    row("Events and jobs", 34),
    panel(
        "Outbox backlog",
        [("max(events_outbox_backlog)", "waiting")],
        0,
        35,
        w=6,
        kind="stat",
        thresholds=[
            {"color": "green", "value": None},
            {"color": "orange", "value": 100},
            {"color": "red", "value": 1000},
        ],
    ),
    panel(
        "Dead letters (24 h)",
        [('sum(increase(events_failed_total{kind="dead_lettered"}[24h]))', "dead-lettered")],
        6,
        35,
        w=6,
        kind="stat",
        thresholds=RED,
    ),
    panel(
        "Webhook deliveries",
        [
            ("sum(rate(events_delivered_total[$__rate_interval]))", "delivered"),
            ("sum by (kind) (rate(events_failed_total[$__rate_interval]))", "failed {{kind}}"),
        ],
        12,
        35,
        unit="ops",
    ),
    panel(
        "Reconciliation drift",
        [("max by (ledger) (reconciliation_drift)", "{{ledger}}")],
        0,
        43,
        thresholds=RED,
    ),
    panel(
        "Scheduled job runs",
        [("sum by (job, outcome) (increase(scheduled_job_runs_total[1h]))", "{{job}} {{outcome}}")],
        12,
        43,
    ),
]

dashboard = {
    "uid": "budgeting-service",
    "title": "Budgeting service",
    "tags": ["budgeting", "rate-limits"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {
        "list": [
            {
                "name": "datasource",
                "type": "datasource",
                "query": "prometheus",
                "label": "Prometheus",
                "current": {},
                "hide": 0,
            }
        ]
    },
    "annotations": {"list": []},
    "panels": panels,
}

Path(__file__).with_name("budgeting-service.json").write_text(
    json.dumps(dashboard, indent=2) + "\n"
)
