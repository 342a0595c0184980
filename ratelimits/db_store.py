"""The database store (the embedded default, SPEC 3.5): `rate_limit_usage` rows.

One check is one transaction: the rows of every counter it touches are created if missing
(INSERT ... ON CONFLICT DO NOTHING) and then locked with SELECT ... FOR UPDATE in key order,
so concurrent checks serialise per counter and never deadlock; the engine's `run_check`
decides with the same pure functions as the memory store; the rows are updated before commit.
On SQLite the transaction is IMMEDIATE (settings), which serialises writers outright.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F

from budgeting_site.platform import clock
from ratelimits.engine import Algorithm, CheckBatch, CheckResult, LimitSpec
from ratelimits.engine.stores.base import (
    DEFAULT_SLIDING_LOG_MAX,
    DatabaseStoreBase,
    StoredReceipt,
    degraded_result,
    run_check,
    storage_key,
)
from ratelimits.models import PolicyEpoch, RateLimitUsage

logger = logging.getLogger(__name__)

ReceiptWriter = Callable[[StoredReceipt], None]


def clock_ms() -> int:
    """The platform clock (time-machine moves it in tests) in ms since the epoch."""
    return int(clock.now().timestamp() * 1000)


class DatabaseStore(DatabaseStoreBase):
    def __init__(
        self,
        *,
        sliding_log_max: int = DEFAULT_SLIDING_LOG_MAX,
        receipt_writer: ReceiptWriter | None = None,
    ) -> None:
        self.sliding_log_max = sliding_log_max
        self.receipt_writer = receipt_writer

    def check(self, batch: CheckBatch, *, now_ms: int | None = None) -> CheckResult:
        compiled, api = self.compile(batch)
        now = now_ms if now_ms is not None else clock_ms()
        try:
            with transaction.atomic():
                txn = _DbTxn(self, batch.tenant, self.lock_order(batch), now)
                return run_check(txn, batch, compiled, api, now)
        except DatabaseError:
            logger.warning("ratelimit.store_degraded", extra={"reason": "database"}, exc_info=True)
            return degraded_result(batch, now, "database")

    def get_epoch(self, tenant: str) -> int:
        value = PolicyEpoch.objects.filter(tenant_id=tenant).values_list("epoch", flat=True)
        return next(iter(value), 0)

    def bump_epoch(self, tenant: str) -> int:
        with transaction.atomic():
            PolicyEpoch.objects.get_or_create(tenant_id=tenant)
            PolicyEpoch.objects.filter(tenant_id=tenant).update(epoch=F("epoch") + 1)
            return self.get_epoch(tenant)

    def clear(self, tenant: str, specs: Sequence[LimitSpec]) -> None:
        RateLimitUsage.objects.filter(
            tenant_id=tenant, key__in=[storage_key(s) for s in specs]
        ).delete()

    def read_receipts(self, tenant: str, count: int = 500) -> list[StoredReceipt]:
        return []  # receipts are written in the check's own transaction

    def ack_receipts(self, tenant: str, entry_ids: Sequence[str]) -> int:
        return 0

    def receipt_tenants(self) -> list[str]:
        return []


class _DbTxn:
    def __init__(self, store: DatabaseStore, tenant: str, keys: list[str], now: int) -> None:
        self.store = store
        self.now = now
        if keys:
            RateLimitUsage.objects.bulk_create(
                [RateLimitUsage(tenant_id=tenant, key=k) for k in keys], ignore_conflicts=True
            )
        rows = (
            RateLimitUsage.objects.select_for_update()
            .filter(tenant_id=tenant, key__in=keys)
            .order_by("key")
        )
        self.rows: dict[str, RateLimitUsage] = {r.key: r for r in rows}

    def get_epoch(self, tenant: str) -> int:
        return self.store.get_epoch(tenant)

    def get_idempotency(self, tenant: str, key: str) -> tuple[str, str] | None:
        return None  # the platform's idempotency table serves the database store

    def put_idempotency(
        self, tenant: str, key: str, fingerprint: str, stored: str, ttl_ms: int
    ) -> None:
        return None

    def load(self, tenant: str, key: str, algorithm: Algorithm) -> Any:
        row = self.rows.get(key)
        if row is None or row.expires_at_ms <= self.now:
            return None
        if algorithm is Algorithm.FIXED_WINDOW:
            return None if row.window_start_ms is None else (row.window_start_ms, row.count)
        if algorithm is Algorithm.SLIDING_WINDOW_LOG:
            return list(row.entries or [])
        return None if row.unit <= 0 else (row.level, row.unit, row.updated_ms)

    def save(self, tenant: str, key: str, algorithm: Algorithm, state: Any, ttl_ms: int) -> None:
        row = self.rows[key]
        row.expires_at_ms = self.now + ttl_ms
        if algorithm is Algorithm.FIXED_WINDOW:
            row.window_start_ms, row.count = state
            fields = ["window_start_ms", "count", "expires_at_ms"]
        elif algorithm is Algorithm.SLIDING_WINDOW_LOG:
            row.entries = list(state)
            fields = ["entries", "expires_at_ms"]
        else:
            row.level, row.unit, row.updated_ms = state
            fields = ["level", "unit", "updated_ms", "expires_at_ms"]
        row.save(update_fields=fields)

    def add_receipt(self, tenant: str, receipt_id: str, facts: str, result: str, now: int) -> None:
        if self.store.receipt_writer is not None:
            self.store.receipt_writer(
                StoredReceipt(f"db-{receipt_id}", tenant, receipt_id, facts, result, now)
            )
