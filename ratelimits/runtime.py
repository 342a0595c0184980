"""Per-process runtime state: the configured stores and the policy snapshots.

- `policy_store()` is the store of SPEC 3.5 chosen by `RATELIMIT_STORE`; `api_store()` serves
  this API's own limits (SPEC 1.5): the same Redis store in production, and in the embedded
  default a process-local memory store (SPEC 10: "this API's own limit in memory").
- A tenant's enabled policies and emergency grants are cached per process together with the
  tenant's policy epoch; every check sends the epoch to the store, which answers "stale" when
  a policy changed anywhere, and the snapshot is reloaded at once (no TTL on policies).
- Budget throttle factors are read through `selectors.throttle_factors` and cached for
  `THROTTLE_TTL_SECONDS`: the budgets app publishes them, and a few seconds of lag is the
  price of not asking the database on every check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from ratelimits.engine import CircuitBreaker, MemoryStore, RedisStore, Store

THROTTLE_TTL_SECONDS = 2.0
#: A backstop, not the mechanism: the epoch makes changes visible on the next check; this only
#: bounds how long a change can stay unseen if its epoch bump was lost (store down, process
#: died between commit and bump).
SNAPSHOT_MAX_AGE_SECONDS = 300.0

_lock = threading.Lock()
_stores: dict[str, Store] = {}


def _build_policy_store() -> Store:
    kind = settings.RATELIMIT_STORE
    if kind == "redis":
        return _redis_store()
    if kind == "memory":
        return MemoryStore(sliding_log_max=settings.RATELIMIT_SLIDING_LOG_MAX)
    from ratelimits.db_store import DatabaseStore
    from ratelimits.services import write_receipt_now

    return DatabaseStore(
        sliding_log_max=settings.RATELIMIT_SLIDING_LOG_MAX, receipt_writer=write_receipt_now
    )


def _redis_store() -> RedisStore:
    store = _stores.get("redis")
    if store is None:
        store = RedisStore(
            settings.REDIS_URL,
            socket_timeout=settings.RATELIMIT_REDIS_TIMEOUT_MS / 1000,
            allow_injected_clock=settings.RATELIMIT_ALLOW_INJECTED_CLOCK,
            sliding_log_max=settings.RATELIMIT_SLIDING_LOG_MAX,
            breaker=CircuitBreaker(failure_threshold=3, reset_timeout=2.0),
        )
        _stores["redis"] = store
    assert isinstance(store, RedisStore)
    return store


def policy_store() -> Store:
    store = _stores.get("policy")
    if store is None:
        with _lock:
            store = _stores.get("policy")
            if store is None:
                store = _build_policy_store()
                _stores["policy"] = store
    return store


def api_store() -> Store:
    store = _stores.get("api")
    if store is None:
        with _lock:
            store = _stores.get("api")
            if store is None:
                redis_mode = settings.RATELIMIT_STORE == "redis"
                store = _redis_store() if redis_mode else MemoryStore()
                _stores["api"] = store
    return store


def injected_now_ms(store: Store) -> int | None:
    """The platform clock in ms when the store must take it (tests), else None (store clock)."""
    if isinstance(store, RedisStore) and not store.allow_injected_clock:
        return None
    if isinstance(store, MemoryStore):
        return None
    from ratelimits.db_store import clock_ms

    return clock_ms()


# --- policy snapshots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySnap:
    id: str
    version: int
    scope_type: str
    scope_id: str
    resource_type: str
    limit_value: int
    time_window_seconds: int
    algorithm: str
    burst_capacity: int
    overrides: dict[str, Any]
    mode: str
    fail_mode: str
    usage_factor: Decimal
    policy_name: str

    @property
    def version_id(self) -> str:
        return f"{self.id}@{self.version}"


@dataclass(frozen=True)
class GrantSnap:
    policy_id: str
    extra_requests: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    policies: tuple[PolicySnap, ...]
    grants: tuple[GrantSnap, ...]
    loaded_at: float = field(default_factory=time.monotonic)

    def extra_for(self, policy_id: str, at: datetime) -> int:
        return sum(
            g.extra_requests
            for g in self.grants
            if g.policy_id == policy_id and g.starts_at <= at < g.ends_at
        )


UNKNOWN_EPOCH = -1
_snapshots: dict[str, Snapshot] = {}
#: Tenants whose epoch bump failed in this process: retried before its next check.
pending_bumps: set[str] = set()
_throttle: dict[str, tuple[float, list[tuple[str, str, Decimal]]]] = {}


def snapshot(tenant_id: str, store: Store, *, epoch: int | None = None) -> Snapshot:
    """The cached snapshot, or a fresh one (the epoch is read before the rows, never after)."""
    cached = _snapshots.get(tenant_id)
    if (
        cached is not None
        and epoch is None
        and time.monotonic() - cached.loaded_at < SNAPSHOT_MAX_AGE_SECONDS
    ):
        return cached
    from ratelimits import selectors

    if epoch is None:
        try:
            epoch = store.get_epoch(tenant_id)
        except Exception:
            # The store cannot say: decide with what the database says now, and do not cache
            # it (UNKNOWN_EPOCH never matches, so a store that is back forces a reload).
            return selectors.load_snapshot(tenant_id, UNKNOWN_EPOCH)
    fresh = selectors.load_snapshot(tenant_id, epoch)
    _snapshots[tenant_id] = fresh
    return fresh


def throttle_factors(tenant_id: str) -> list[tuple[str, str, Decimal]]:
    entry = _throttle.get(tenant_id)
    now = time.monotonic()
    if entry is not None and now - entry[0] < THROTTLE_TTL_SECONDS:
        return entry[1]
    from ratelimits import selectors

    factors = selectors.throttle_factors(tenant_id)
    _throttle[tenant_id] = (now, factors)
    return factors


def retry_pending_bumps(store: Store) -> None:
    for tenant_id in list(pending_bumps):
        try:
            store.bump_epoch(tenant_id)
        except Exception:
            return  # still down: try again on the next check
        pending_bumps.discard(tenant_id)


def forget(tenant_id: str | None = None) -> None:
    """Drop cached snapshots (tests; a process that changed a policy itself)."""
    if tenant_id is None:
        _snapshots.clear()
        _throttle.clear()
    else:
        _snapshots.pop(tenant_id, None)
        _throttle.pop(tenant_id, None)


def reset() -> None:
    """Forget every store and snapshot (tests that change settings)."""
    pending_bumps.clear()
    with _lock:
        for store in _stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()
        _stores.clear()
    forget()
