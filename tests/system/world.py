"""Resources of every kind, created over HTTP in a tenant, and the ids they answer with.

Each seeder follows SPEC's request shapes; a domain whose endpoint is not there yet answers
404/405 and is recorded in `missing`, so a sweep can say exactly what it could not cover.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.system.routes import ALL_ROLES
from tests.system.stack import Stack

START = "2020-01-01T00:00:00Z"
#: A quota allocation of the caller's tenant: one request that publishes one event
#: (`quota_allocated`), for the tests that watch a webhook delivery.
QUOTA_ALLOCATION = {
    "resource_type": "gpu.hours",
    "allocated_amount": "10",
    "period_start": START,
    "period_end": "2099-01-01T00:00:00Z",
    "auto_renew": False,
}


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def harvest(body: Any, into: dict[str, set[str]]) -> None:
    """Every `<name>_id` (and `id`) key with a UUID value, anywhere in a JSON body."""
    if isinstance(body, dict):
        for key, value in body.items():
            if (key.endswith("_id") or key == "id") and _is_uuid(value):
                into[key].add(value)
            elif key.endswith("_ids") and isinstance(value, list):
                for v in value:
                    if _is_uuid(v):
                        into[key[:-1]].add(v)
            else:
                harvest(value, into)
    elif isinstance(body, list):
        for item in body:
            harvest(item, into)


@dataclass
class TenantWorld:
    stack: Stack
    tenant: str
    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    missing: list[str] = field(default_factory=list)
    answers: dict[str, httpx.Response] = field(default_factory=dict)

    def client(self, roles: list[str] | None = None, sub: str = "svc-system") -> httpx.Client:
        return httpx.Client(
            base_url=self.stack.api,
            headers=self.stack.headers(self.tenant, roles or sorted(ALL_ROLES), sub=sub),
            timeout=15,
        )

    def call(
        self, name: str, method: str, path: str, body: Any = None, *, sub: str = "svc-system"
    ) -> httpx.Response | None:
        with self.client(sub=sub) as c:
            r = c.request(method, path, json=body)
        self.answers[name] = r
        if r.status_code in (404, 405) and r.headers.get("content-type", "").startswith(
            "application/json"
        ):
            code = r.json().get("error_code")
            if code in ("NOT_FOUND", "METHOD_NOT_ALLOWED"):
                self.missing.append(f"{name}: {method} {path} -> {r.status_code}")
                return None
        if r.status_code >= 400:
            self.missing.append(f"{name}: {method} {path} -> {r.status_code} {r.text[:300]}")
            return None
        if r.content and r.headers.get("content-type", "").startswith("application/json"):
            harvest(r.json(), self.ids)
        return r

    def seed(self, webhook_url: str | None = None) -> TenantWorld:
        """One of each: budgets (hard stop, escalate), a hold, an approval request, a policy, a
        quota and a consumption, cost records, a subscription, alerts and receipts."""
        self.call(
            "budget",
            "POST",
            "/budgets",
            {
                "budget_name": "tenant budget",
                "budget_amount": "1000",
                "period_type": "monthly",
                "start_date": START,
                "allocated_to_type": "tenant",
                "allocated_to_id": self.tenant,
                "enforcement_action": "hard_stop",
            },
        )
        self.call(
            "budget_escalate",
            "POST",
            "/budgets",
            {
                "budget_name": "escalating project",
                "budget_amount": "10",
                "period_type": "monthly",
                "start_date": START,
                "allocated_to_type": "project",
                "allocated_to_id": "p-escalate",
                "enforcement_action": "escalate",
            },
        )
        # A hold (reservation), then 85 % on the escalating budget (threshold alerts), then
        # one over it (an approval request).
        self.call(
            "check",
            "POST",
            "/budgets/check",
            {"resource_type": "llm.tokens", "estimated_cost": "1.5"},
        )
        self.call(
            "check_escalate_80",
            "POST",
            "/budgets/check",
            {
                "resource_type": "llm.tokens",
                "estimated_cost": "8.5",
                "allocated_to_type": "project",
                "allocated_to_id": "p-escalate",
            },
        )
        self.call(
            "check_escalate_over",
            "POST",
            "/budgets/check",
            {
                "resource_type": "llm.tokens",
                "estimated_cost": "5",
                "allocated_to_type": "project",
                "allocated_to_id": "p-escalate",
            },
            sub="requester-1",
        )
        self.call(
            "policy",
            "POST",
            "/rate-limits",
            {
                "scope_type": "tenant",
                "scope_id": self.tenant,
                "resource_type": "api.calls",
                "limit_value": 100,
                "time_window_seconds": 60,
            },
        )
        self.call(
            "rl_check",
            "POST",
            "/rate-limits/check",
            {"resource_type": "api.calls", "request_count": 1},
        )
        self.call(
            "quota",
            "POST",
            "/quotas/allocate",
            {
                "resource_type": "gpu.hours",
                "allocation_type": "tenant",
                "allocated_amount": "100",
                "period_start": START,
                "period_end": "2099-01-01T00:00:00Z",
                "auto_renew": False,
            },
        )
        self.call(
            "quota_consume",
            "POST",
            "/quotas/consume",
            {"resource_type": "gpu.hours", "amount": "3"},
        )
        self.call(
            "cost",
            "POST",
            "/cost-tracking/record",
            {"resource_type": "llm.tokens", "cost_amount": "0.25", "service_name": "chat"},
        )
        if webhook_url:
            self.call(
                "subscription",
                "POST",
                "/event-subscriptions",
                {
                    "event_types": ["quota_allocated", "budget_threshold_exceeded"],
                    "webhook_url": f"{webhook_url}/{self.tenant}",
                },
            )
        self.harvest_lists()
        return self

    def harvest_lists(self) -> None:
        from tests.system.routes import api_routes

        with self.client() as c:
            for route in api_routes():
                if route.method != "GET" or route.params or route.public:
                    continue
                r = c.get(route.template)
                if r.status_code == 200 and r.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    harvest(r.json(), self.ids)
            for sub_id in list(self.ids.get("subscription_id", ())):
                r = c.get(f"/event-subscriptions/{sub_id}/deliveries")
                if r.status_code == 200:
                    harvest(r.json(), self.ids)

    def all_ids(self) -> set[str]:
        return {v for values in self.ids.values() for v in values}


# The id field a by-id route's parameter means, by the static segment before it.
SEGMENT_FIELD = {
    "alerts": "alert_id",
    "approvals": "approval_id",
    "event-subscriptions": "subscription_id",
    "receipts": "receipt_id",
    "budgets": "budget_id",
    "reservations": "reservation_id",
    "rate-limits": "policy_id",
    "quotas": "quota_id",
    "cost-tracking": "record_id",
    "deliveries": "delivery_id",
    "anomalies": "anomaly_id",
    "allocations": "allocation_id",
}


def field_for(template: str, param: str) -> str | None:
    if param.endswith("_id") and param != "tenant_id":
        return param
    parts = template.strip("/").split("/")
    idx = parts.index("{" + param + "}")
    if idx == 0:
        return None
    return SEGMENT_FIELD.get(parts[idx - 1])


def fill(template: str, world: TenantWorld) -> tuple[str | None, list[str]]:
    """The template with each parameter set to one of the world's ids; the unmapped ones."""
    path = template
    unmapped: list[str] = []
    for param in re_params(template):
        name = field_for(template, param)
        values = sorted(world.ids.get(name or "", ()))
        if not values:
            unmapped.append(f"{param} ({name or 'no field'})")
            continue
        path = path.replace("{" + param + "}", values[0])
    return (None if unmapped else path), unmapped


def re_params(template: str) -> list[str]:
    import re

    return re.findall(r"\{(\w+)\}", template)
