"""Metrics from every process of the stack reach the web's /metrics.

Webhook deliveries and job runs are counted in the Celery worker's processes, decisions in
gunicorn's workers; with PROMETHEUS_MULTIPROC_DIR shared by all of them, a scrape of either
gunicorn worker answers the sum over every process (docs/scaling.md, Metrics).
"""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.receiver import Receiver
from tests.system.stack import Stack, wait_for
from tests.system.world import QUOTA_ALLOCATION

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]


def _scrape(stack: Stack) -> dict[tuple[str, frozenset], float]:
    with stack.client(f"t-sys-metrics-{uuid.uuid4().hex[:6]}", ["auditor"]) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_worker_side_counters_reach_the_web_metrics(healthy_stack):
    stack = healthy_stack
    tenant = f"t-sys-metrics-{uuid.uuid4().hex[:8]}"
    before = _scrape(stack)
    receiver = Receiver()
    try:
        with stack.client(tenant, ["tenant_admin", "service"]) as c:
            r = c.post(
                "/event-subscriptions",
                json={"event_types": ["quota_allocated"], "webhook_url": receiver.url + "/m"},
            )
            assert r.status_code == 201, r.text
            r = c.post("/quotas/allocate", json=QUOTA_ALLOCATION)
            assert r.status_code == 201, r.text
            r = c.post("/rate-limits/check", json={"resource_type": "api.calls"})
            assert r.status_code == 200, r.text
        wait_for(lambda: receiver.received("/m"), timeout=30, what="the webhook delivery")

        def delivered_counted():
            samples = _scrape(stack)
            grown = _value(samples, "events_delivered_total") > _value(
                before, "events_delivered_total"
            )
            return samples if grown else None

        # The worker counts the delivery once the receiver's answer is written down.
        after = wait_for(delivered_counted, timeout=30, interval=0.5, what="events_delivered")
    finally:
        receiver.close()
    # Only the worker's processes deliver webhooks and run the relay.
    relay = {"job": "events.relay_outbox", "outcome": "ok"}
    assert _value(after, "scheduled_job_runs_total", **relay) > 0
    # Decided in gunicorn's workers, in the same scrape.
    assert _value(after, "rate_limit_check_duration_seconds_count") >= 1
    # Either gunicorn worker answers the same sums: counters never go back between scrapes.
    for _ in range(6):
        again = _scrape(stack)
        assert _value(again, "events_delivered_total") >= _value(after, "events_delivered_total")
        assert _value(again, "scheduled_job_runs_total", **relay) >= _value(
            after, "scheduled_job_runs_total", **relay
        )
