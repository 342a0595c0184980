"""One process, thread-safe: for the embedded API limit and for unit tests.

One lock serialises whole checks, which is what makes a multi-limit check all-or-nothing here.
Expired state is dropped lazily on read and by a sweep every `sweep_interval_ms` of clock time.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

from ..clock import Clock, MonotonicClock
from ..types import Algorithm, CheckBatch, CheckResult, LimitSpec
from .base import DEFAULT_SLIDING_LOG_MAX, Store, StoredReceipt, run_check, storage_key


class MemoryStore(Store):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        sliding_log_max: int = DEFAULT_SLIDING_LOG_MAX,
        sweep_interval_ms: int = 30_000,
    ) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.sliding_log_max = sliding_log_max
        self._lock = threading.Lock()
        # (tenant, key) -> (expires_at_ms, state)
        self._state: dict[tuple[str, str], tuple[int, Any]] = {}
        self._idempotency: dict[tuple[str, str], tuple[int, str, str]] = {}
        self._epochs: dict[str, int] = {}
        self._receipts: dict[str, list[StoredReceipt]] = {}
        self._receipt_seq = itertools.count(1)
        self._sweep_interval_ms = sweep_interval_ms
        self._next_sweep = 0
        self._txn = _MemoryTxn(self)
        self._now = 0

    def check(self, batch: CheckBatch, *, now_ms: int | None = None) -> CheckResult:
        compiled, api = self.compile(batch)
        with self._lock:
            now = self.clock() if now_ms is None else now_ms
            self._now = now
            if now >= self._next_sweep:
                self._sweep(now)
            return run_check(self._txn, batch, compiled, api, now)

    def get_epoch(self, tenant: str) -> int:
        with self._lock:
            return self._epochs.get(tenant, 0)

    def bump_epoch(self, tenant: str) -> int:
        with self._lock:
            value = self._epochs.get(tenant, 0) + 1
            self._epochs[tenant] = value
            return value

    def clear(self, tenant: str, specs: Sequence[LimitSpec]) -> None:
        with self._lock:
            for spec in specs:
                self._state.pop((tenant, storage_key(spec)), None)

    def read_receipts(self, tenant: str, count: int = 500) -> list[StoredReceipt]:
        with self._lock:
            return list(self._receipts.get(tenant, [])[:count])

    def ack_receipts(self, tenant: str, entry_ids: Sequence[str]) -> int:
        drop = set(entry_ids)
        with self._lock:
            entries = self._receipts.get(tenant, [])
            kept = [r for r in entries if r.entry_id not in drop]
            self._receipts[tenant] = kept
            if not kept:
                self._receipts.pop(tenant, None)
            return len(entries) - len(kept)

    def receipt_tenants(self) -> list[str]:
        with self._lock:
            return [t for t, entries in self._receipts.items() if entries]

    def state_of(self, tenant: str, spec: LimitSpec) -> Any:
        """The raw stored state of a limit (for tests and the admin's "current use")."""
        with self._lock:
            entry = self._state.get((tenant, storage_key(spec)))
            return None if entry is None else entry[1]

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + self._sweep_interval_ms
        for table in (self._state, self._idempotency):
            expired = [k for k, v in table.items() if v[0] <= now]
            for k in expired:
                del table[k]


class _MemoryTxn:
    """The StateTxn of MemoryStore; only ever used under the store's lock."""

    def __init__(self, store: MemoryStore) -> None:
        self.s = store

    def get_epoch(self, tenant: str) -> int:
        return self.s._epochs.get(tenant, 0)

    def get_idempotency(self, tenant: str, key: str) -> tuple[str, str] | None:
        entry = self.s._idempotency.get((tenant, key))
        if entry is None or entry[0] <= self.s._now:
            return None
        return entry[1], entry[2]

    def put_idempotency(
        self, tenant: str, key: str, fingerprint: str, stored: str, ttl_ms: int
    ) -> None:
        self.s._idempotency[(tenant, key)] = (self.s._now + ttl_ms, fingerprint, stored)

    def load(self, tenant: str, key: str, algorithm: Algorithm) -> Any:
        entry = self.s._state.get((tenant, key))
        if entry is None or entry[0] <= self.s._now:
            return None
        return entry[1]

    def save(self, tenant: str, key: str, algorithm: Algorithm, state: Any, ttl_ms: int) -> None:
        self.s._state[(tenant, key)] = (self.s._now + ttl_ms, state)

    def add_receipt(self, tenant: str, receipt_id: str, facts: str, result: str, now: int) -> None:
        entry_id = f"{now}-{next(self.s._receipt_seq)}"
        self.s._receipts.setdefault(tenant, []).append(
            StoredReceipt(entry_id, tenant, receipt_id, facts, result, now)
        )
