"""The rate-limit engine: algorithms, effective-limit math and stores, with no Django import.

Typical use (the Django layer builds the specs from policies)::

    store = RedisStore("redis://localhost:6379/0")
    result = store.check(CheckBatch(
        tenant="acme",
        limits=[LimitSpec(key="<policy_id>:<resource_key>", algorithm=Algorithm.TOKEN_BUCKET,
                          limit=1000, window_seconds=3600, ref="<policy_id>@3")],
        api_limit=LimitSpec(key="api:rate_limit_check", algorithm=Algorithm.TOKEN_BUCKET,
                            limit=50_000, window_seconds=60),
        expected_epoch=cached_epoch,
        idempotency=IdempotencySpec(key="abc", fingerprint="sha256:..."),
        receipt=ReceiptSpec(receipt_id="<uuid>", facts="<canonical json>"),
    ))
    if result.outcome is Outcome.STALE_POLICIES: reload the policies and ask again
    result.allowed, result.deciding, result.decisions, result.degraded ...

See `stores/base.py` for the order in which one check decides.
"""

from .breaker import CircuitBreaker
from .clock import Clock, ManualClock, MonotonicClock
from .stores import DatabaseStoreBase, MemoryStore, RedisStore, StateTxn, Store, StoredReceipt
from .types import (
    Algorithm,
    CheckBatch,
    CheckResult,
    Compiled,
    Decision,
    FailMode,
    IdempotencySpec,
    LimitSpec,
    Outcome,
    ReceiptSpec,
    compile_spec,
    exactly_decidable,
)

__all__ = [
    "Algorithm",
    "CheckBatch",
    "CheckResult",
    "CircuitBreaker",
    "Clock",
    "Compiled",
    "DatabaseStoreBase",
    "Decision",
    "FailMode",
    "IdempotencySpec",
    "LimitSpec",
    "ManualClock",
    "MemoryStore",
    "MonotonicClock",
    "Outcome",
    "ReceiptSpec",
    "RedisStore",
    "StateTxn",
    "Store",
    "StoredReceipt",
    "compile_spec",
    "exactly_decidable",
]
