"""Shared by the costs benchmarks: realistic record generation."""

import random
from datetime import UTC, datetime, timedelta

RESOURCES = ("llm_tokens", "gpu_hours", "storage_gb", "api_calls", "embeddings", "egress_gb")
SERVICES = (
    "chat-api",
    "search-api",
    "trainer",
    "warehouse",
    "batch",
    "gateway",
    "indexer",
    "reranker",
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1")
PROJECTS = tuple(f"proj-{i:02d}" for i in range(20))
ENVS = ("prod", "staging", "dev")


def make_items(n: int, *, seed: int, key_prefix: str, start: datetime, span_seconds: int):
    rng = random.Random(seed)
    items = []
    for i in range(n):
        ts = start + timedelta(
            seconds=rng.randrange(span_seconds), microseconds=rng.randrange(10**6)
        )
        items.append(
            {
                "idempotency_key": f"{key_prefix}-{i}",
                "resource_type": rng.choice(RESOURCES),
                "cost_amount": f"{rng.randrange(1, 10**7) / 10**5:.5f}",
                "usage_quantity": f"{rng.randrange(1, 10**6) / 100:.2f}",
                "usage_unit": "unit",
                "service_name": rng.choice(SERVICES),
                "region": rng.choice(REGIONS),
                "attributed_to_type": "project",
                "attributed_to_id": rng.choice(PROJECTS),
                "tags": {"env": rng.choice(ENVS), "team": f"team-{rng.randrange(8)}"},
                "timestamp": ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
        )
    return items
