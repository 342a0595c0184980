"""Demo costs for `manage.py seed_demo`: unit prices, FX rates and 60 days of realistic
records (a weekly rhythm, slow growth, a recent jump on one project), a shared cost allocated
over projects, and the anomaly job run over the last days. Safe to run again."""

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from budgeting_site.platform import clock
from costs import services
from costs.models import CostAllocation, FxRate, UnitPrice

DAYS = 60
ACTOR = {"principal": "system:seed_demo", "credential_id": "", "instance": "seed"}

PRICES = (
    # resource type, unit, price per unit (USD)
    ("llm_tokens", "1k_tokens", "0.0020"),
    ("gpu_hours", "hour", "2.4800"),
    ("storage_gb", "gb_month", "0.0230"),
    ("api_calls", "call", "0.0004"),
)
RATES = (("EUR", "USD", "1.0850"), ("GBP", "USD", "1.2700"), ("USD", "JPY", "151.20"))

#: (project, feature, service, region, resource, unit, daily usage on a weekday)
WORKLOADS = (
    (
        "proj-search",
        "feat-semantic-search",
        "search-api",
        "us-east-1",
        "llm_tokens",
        "1k_tokens",
        9000,
    ),
    ("proj-search", "feat-semantic-search", "search-api", "eu-west-1", "api_calls", "call", 120000),
    ("proj-ml-training", None, "trainer", "us-east-1", "gpu_hours", "hour", 36),
    ("proj-chat", "feat-summarize", "chat-api", "eu-west-1", "llm_tokens", "1k_tokens", 14000),
    ("proj-chat", "feat-summarize", "chat-api", "us-east-1", "llm_tokens", "1k_tokens", 6000),
    ("proj-analytics", None, "warehouse", "us-east-1", "storage_gb", "gb_month", 2500),
)

#: Costs attributed to a feature (the dashboard's "by feature" chart), each with its project
#: in the context: (feature, project, service, region, resource, unit, daily usage on a weekday)
FEATURE_WORKLOADS = (
    ("feat-semantic-search", "proj-search", "embedder", "us-east-1", "api_calls", "call", 30000),
    ("feat-image-export", "proj-analytics", "render-worker", "us-east-1", "gpu_hours", "hour", 4),
    ("feat-summarize", "proj-chat", "chat-api", "eu-west-1", "llm_tokens", "1k_tokens", 3000),
    ("feat-autocomplete", "proj-search", "suggest", "eu-west-1", "llm_tokens", "1k_tokens", 2500),
)


def seed(tenant_id: str) -> None:
    now = clock.now()
    long_ago = now - timedelta(days=400)
    if not UnitPrice.objects.filter(tenant_id="").exists():
        for resource_type, unit, price in PRICES:
            services.set_unit_price(
                resource_type=resource_type,
                usage_unit=unit,
                unit_price=Decimal(price),
                effective_from=long_ago,
            )
    if not FxRate.objects.filter(tenant_id="").exists():
        for base, quote, rate in RATES:
            services.set_fx_rate(
                base_currency=base,
                quote_currency=quote,
                rate=Decimal(rate),
                effective_from=long_ago,
            )

    rng = random.Random(35)  # the same demo every time
    today = now.astimezone(UTC).date()
    items = []
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        weekend = day.weekday() >= 5
        growth = 1 + (DAYS - back) * 0.002
        for w, (project, feature, service, region, resource, unit, usage) in enumerate(WORKLOADS):
            level = usage * growth * (0.35 if weekend and resource != "storage_gb" else 1)
            if project == "proj-chat" and back <= 3:
                level *= 1.7  # a new customer on the chat product: the anomaly job sees it
            for part in range(4):
                at = datetime.combine(day, time(hour=1 + part * 6), tzinfo=UTC) + timedelta(
                    minutes=rng.randint(0, 240)
                )
                if at > now:
                    continue
                quantity = Decimal(str(round(level / 4 * rng.uniform(0.92, 1.08), 3)))
                item = {
                    "idempotency_key": f"demo-{day.isoformat()}-{w}-{part}",
                    "resource_type": resource,
                    "usage_quantity": str(quantity),
                    "usage_unit": unit,
                    "service_name": service,
                    "region": region,
                    "attributed_to_type": "project",
                    "attributed_to_id": project,
                    "operation_context": {"feature_id": feature} if feature else {},
                    "tags": {"env": "prod" if part else "staging", "team": project[5:]},
                    "timestamp": at.isoformat(),
                }
                items.append(item)
    items += _feature_items(today, now)
    for start in range(0, len(items), 1000):
        services.record_batch(tenant_id=tenant_id, items=items[start : start + 1000], actor=ACTOR)

    if not CostAllocation.objects.filter(tenant_id=tenant_id).exists():
        first = today - timedelta(days=DAYS - 1)
        services.create_allocation(
            tenant_id=tenant_id,
            spec={
                "rule": "weighted",
                "cost_amount": Decimal("5400.00"),
                "currency": "USD",
                "resource_type": "shared_platform",
                "service_name": "platform",
                "targets": [
                    {"attributed_to_type": "project", "attributed_to_id": p, "weight": w}
                    for p, w in (("proj-search", 3), ("proj-chat", 5), ("proj-analytics", 2))
                ],
                "amortize_from": first,
                "amortize_to": today + timedelta(days=30),
            },
            actor=ACTOR,
        )
    services.detect_anomalies(now=now, tenant_id=tenant_id)


def _feature_items(today: date, now: datetime) -> list[dict]:
    """The records of FEATURE_WORKLOADS, two a day (their own noise, so the project records
    above keep theirs)."""
    rng = random.Random(36)
    items = []
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        weekend = day.weekday() >= 5
        for w, (feature, project, service, region, resource, unit, usage) in enumerate(
            FEATURE_WORKLOADS
        ):
            level = usage * (0.4 if weekend else 1)
            for part in range(2):
                at = datetime.combine(day, time(hour=4 + part * 12), tzinfo=UTC) + timedelta(
                    minutes=rng.randint(0, 300)
                )
                if at > now:
                    continue
                quantity = Decimal(str(round(level / 2 * rng.uniform(0.9, 1.1), 3)))
                items.append(
                    {
                        "idempotency_key": f"demo-{day.isoformat()}-f{w}-{part}",
                        "resource_type": resource,
                        "usage_quantity": str(quantity),
                        "usage_unit": unit,
                        "service_name": service,
                        "region": region,
                        "attributed_to_type": "feature",
                        "attributed_to_id": feature,
                        "operation_context": {"project_id": project},
                        "tags": {"env": "prod", "team": project[5:]},
                        "timestamp": at.isoformat(),
                    }
                )
    return items
