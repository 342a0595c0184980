"""Fixtures for the engine's tests: plain Python, no Django, no database.

Redis tests need REDIS_URL (e.g. redis://127.0.0.1:6379/3). Without it they are skipped with
the reason, except under CI=true, where a missing or unreachable Redis is a failure: CI must
never pass by skipping the store the product runs on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from ratelimits.engine import MemoryStore, RedisStore, Store
from ratelimits.engine.clock import ManualClock

# A fixed instant, a multiple of every window used in these tests (1 day divides it), so
# fixed windows start exactly here. 2023-11-14T00:00:00Z.
T0 = 1_699_920_000_000

# Exactness tests measure math, not latency: a generous timeout keeps a busy shared machine
# from turning a slow reply into a degraded (fail-open) answer.
TEST_SOCKET_TIMEOUT = 2.0


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        if _ci():
            pytest.fail("REDIS_URL is not set and CI=true: the Redis store tests must run in CI")
        pytest.skip("REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379/3)")
    try:
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"REDIS_URL={url} is set but Redis does not answer: {exc}")
    return url


@pytest.fixture
def tenant() -> str:
    """A fresh tenant per test: keys never collide with another test or a colleague's run."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def key_prefix() -> str:
    return f"rltest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def make_redis_store(redis_url: str, key_prefix: str) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**kwargs: object) -> RedisStore:
        options: dict[str, object] = {
            "prefix": key_prefix,
            "allow_injected_clock": True,
            "socket_timeout": TEST_SOCKET_TIMEOUT,
        }
        options.update(kwargs)
        store = RedisStore(redis_url, **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    cleaner = redis.Redis.from_url(redis_url, socket_timeout=5)
    for key in cleaner.scan_iter(match=f"{key_prefix}:*", count=1000):
        cleaner.delete(key)
    cleaner.close()
    for store in made:
        store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Store:
    """Each exactness test runs on the memory store and on the real Redis."""
    if request.param == "memory":
        return MemoryStore(clock=ManualClock(T0))
    make: Callable[..., RedisStore] = request.getfixturevalue("make_redis_store")
    return make()
