"""The store interface, and the one Python implementation of a check's sequence.

A check is decided in one atomic step, in this order (the Redis script follows it too):

1. this API's own limit (if given): refused -> API_LIMITED, nothing else evaluated or written;
2. the policy epoch (if expected): different -> STALE_POLICIES, nothing written;
3. the idempotency key (if given): same fingerprint -> REPLAYED with the stored result,
   another fingerprint -> IDEMPOTENCY_MISMATCH; nothing evaluated;
4. every limit evaluated; admitted iff every non-shadow limit admits; then (unless dry run)
   every admitting limit consumes — a denied check consumes nothing;
5. this API's own limit consumes (steps 3-5), the result is stored under the idempotency key,
   and the decision's facts are appended to the tenant's receipts.

`MemoryStore` runs `run_check` under a lock; the Django `DatabaseStore` runs it inside one
transaction over `rate_limit_usage` rows locked in key order, implementing `StateTxn`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .. import algorithms
from ..types import (
    ALGORITHM_KEY_TAGS,
    Algorithm,
    CheckBatch,
    CheckResult,
    Compiled,
    Decision,
    FailMode,
    LimitSpec,
    Outcome,
    Verdict,
    compile_spec,
)

DEFAULT_SLIDING_LOG_MAX = 10_000
DEGRADED_RETRY_MS = 1_000

OUTCOME_CODES = {
    Outcome.DECIDED: 0,
    Outcome.API_LIMITED: 1,
    Outcome.STALE_POLICIES: 2,
    Outcome.REPLAYED: 3,
    Outcome.IDEMPOTENCY_MISMATCH: 4,
}
OUTCOME_BY_CODE = {code: outcome for outcome, code in OUTCOME_CODES.items()}

ItemWire = list[int]
"""[allowed 0/1, remaining, reset_ms, retry_ms, delay_ms]"""


def storage_key(spec: LimitSpec) -> str:
    """The counter's name inside its tenant; the algorithm tag keeps state types apart."""
    return f"{ALGORITHM_KEY_TAGS[spec.algorithm]}:{spec.key}"


def verdict_wire(v: Verdict) -> ItemWire:
    return [1 if v.allowed else 0, v.remaining, v.reset_ms, v.retry_ms, v.delay_ms]


def _item_text(item: Sequence[int] | None) -> str:
    return "" if not item else ",".join(str(int(v)) for v in item)


def _parse_item(text: str | bytes) -> ItemWire:
    if isinstance(text, bytes):
        return [int(v) for v in text.split(b",")]
    return [int(v) for v in text.split(",")]


def encode_decided(
    now_ms: int, allowed: bool, api: ItemWire | None, items: Sequence[ItemWire], receipt_id: str
) -> str:
    """The compact text the stores keep for receipts and idempotent replays.

    ``"now,allowed|api item|item;item;...|receipt_id"``, each item
    ``"allowed,remaining,reset_ms,retry_ms,delay_ms"`` in the order of `batch.limits`; the Lua
    script writes exactly this text.
    """
    return (
        f"{now_ms},{1 if allowed else 0}|{_item_text(api)}|"
        f"{';'.join(_item_text(i) for i in items)}|{receipt_id}"
    )


def decode_decided(text: str) -> tuple[int, bool, ItemWire | None, list[ItemWire], str]:
    head, api, items, receipt_id = text.split("|", 3)
    now_ms, allowed = head.split(",")
    return (
        int(now_ms),
        allowed == "1",
        _parse_item(api) if api else None,
        [_parse_item(i) for i in items.split(";")] if items else [],
        receipt_id,
    )


def decode_reply(
    reply: bytes,
) -> tuple[int, int, int, bool, int, ItemWire | None, list[ItemWire], str]:
    """The Lua script's answer: (code, now, epoch, allowed, xlen, api, items, stored)."""
    head, api, items, stored = reply.split(b"|", 3)
    code, now, epoch, allowed, xlen = (int(v) for v in head.split(b","))
    return (
        code,
        now,
        epoch,
        allowed == 1,
        xlen,
        _parse_item(api) if api else None,
        [_parse_item(i) for i in items.split(b";")] if items else [],
        stored.decode(),
    )


def decision_from_wire(spec: LimitSpec, compiled: Compiled | None, wire: Sequence[Any]) -> Decision:
    return Decision(
        allowed=bool(wire[0]),
        limit=compiled.limit if compiled is not None else spec.limit,
        remaining=int(wire[1]),
        reset_ms=int(wire[2]),
        retry_ms=int(wire[3]),
        delay_ms=int(wire[4]),
        shadow=spec.shadow,
        ref=spec.ref,
        key=spec.key,
    )


def build_decided(
    batch: CheckBatch,
    compiled: Sequence[Compiled] | None,
    now_ms: int,
    allowed: bool,
    api: Sequence[Any] | None,
    items: Sequence[Sequence[Any]],
    *,
    epoch: int | None,
    outcome: Outcome = Outcome.DECIDED,
    receipt_id: str | None = None,
    receipt_written: bool = False,
) -> CheckResult:
    decisions: tuple[Decision, ...] = ()
    shadow_denied = False
    limits = batch.limits
    if items and len(items) == len(limits):
        built = []
        for i, spec in enumerate(limits):
            w = items[i]
            ok = w[0] == 1
            if spec.shadow and not ok:
                shadow_denied = True
            built.append(
                Decision(
                    ok,
                    compiled[i].limit if compiled is not None else spec.limit,
                    w[1],
                    w[2],
                    w[3],
                    w[4],
                    spec.shadow,
                    spec.ref,
                    spec.key,
                )
            )
        decisions = tuple(built)
    api_decision = (
        decision_from_wire(batch.api_limit, None, api)
        if batch.api_limit is not None and api
        else None
    )
    return CheckResult(
        outcome,
        now_ms,
        allowed,
        decisions,
        api_decision,
        epoch,
        False,
        None,
        receipt_id,
        receipt_written,
        shadow_denied,
    )


def result_from_stored(
    batch: CheckBatch,
    compiled: Sequence[Compiled] | None,
    stored: str,
    *,
    epoch: int | None,
    api_now: Sequence[Any] | None,
) -> CheckResult:
    """An idempotent replay: the first decision, with this request's own API-limit state.

    `stored` is ``"decision\nfacts"``; the decisions are matched to this batch's limits when
    they line up, and the raw items and facts are kept for a caller that rebuilds the answer.
    """
    decided, _, facts = stored.partition("\n")
    now_ms, allowed, _api, items, receipt_id = decode_decided(decided)
    result = build_decided(
        batch,
        compiled,
        now_ms,
        allowed,
        api_now,
        items,
        epoch=epoch,
        outcome=Outcome.REPLAYED,
        receipt_id=receipt_id or None,
    )
    result.replay_facts = facts
    result.replay_items = items
    return result


def degraded_result(batch: CheckBatch, now_ms: int, reason: str) -> CheckResult:
    """The answer when the store cannot be asked: each limit by its fail mode.

    open admits (remaining reported as L - n, nothing counted); closed denies with a short
    retry, since the store may be back in a moment. This API's own limit follows its own
    fail mode (open unless the caller says otherwise).
    """

    def by_fail_mode(spec: LimitSpec) -> Decision:
        admit = spec.fail_mode is FailMode.OPEN
        return Decision(
            allowed=admit,
            limit=spec.limit,
            remaining=max(0, spec.limit - spec.cost) if admit else 0,
            reset_ms=now_ms + (spec.window_seconds * 1000 if admit else DEGRADED_RETRY_MS),
            retry_ms=0 if admit else DEGRADED_RETRY_MS,
            delay_ms=0,
            shadow=spec.shadow,
            ref=spec.ref,
            key=spec.key,
            degraded=True,
        )

    api = by_fail_mode(batch.api_limit) if batch.api_limit is not None else None
    if api is not None and not api.allowed:
        return CheckResult(
            outcome=Outcome.API_LIMITED,
            now_ms=now_ms,
            allowed=False,
            api=api,
            degraded=True,
            degraded_reason=reason,
        )
    decisions = tuple(by_fail_mode(spec) for spec in batch.limits)
    return CheckResult(
        outcome=Outcome.DECIDED,
        now_ms=now_ms,
        allowed=all(d.allowed for d in decisions if not d.shadow),
        decisions=decisions,
        api=api,
        degraded=True,
        degraded_reason=reason,
        receipt_id=batch.receipt.receipt_id if batch.receipt else None,
        receipt_written=False,
        shadow_denied=any(d.shadow and not d.allowed for d in decisions),
    )


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """One decision's facts as read back from a store's receipt log."""

    entry_id: str
    tenant: str
    receipt_id: str
    facts: str
    result: str
    """`encode_decided` JSON: [now_ms, allowed, api, items, receipt_id]."""
    timestamp_ms: int


class Store(ABC):
    """One interface over Redis, memory and the database.

    `check` never raises for a store outage: it answers by each limit's fail mode with
    `degraded=True`. It raises ValueError for a malformed batch (a programming error).
    """

    sliding_log_max: int = DEFAULT_SLIDING_LOG_MAX

    @abstractmethod
    def check(self, batch: CheckBatch, *, now_ms: int | None = None) -> CheckResult: ...

    @abstractmethod
    def get_epoch(self, tenant: str) -> int:
        """The tenant's policy epoch (0 when never bumped)."""

    @abstractmethod
    def bump_epoch(self, tenant: str) -> int:
        """Call after a policy change commits: every process reloads on its next check."""

    def clear(self, tenant: str, specs: Sequence[LimitSpec]) -> None:  # noqa: B027
        """Forget the counters of these limits (e.g. after a policy is deleted)."""

    def read_receipts(self, tenant: str, count: int = 500) -> list[StoredReceipt]:
        """The oldest undrained receipts of a tenant, oldest first."""
        raise NotImplementedError

    def ack_receipts(self, tenant: str, entry_ids: Sequence[str]) -> int:
        """Forget receipts once they are durably stored elsewhere."""
        raise NotImplementedError

    def receipt_tenants(self) -> list[str]:
        """Tenants that may have undrained receipts."""
        raise NotImplementedError

    def compile(self, batch: CheckBatch) -> tuple[list[Compiled], Compiled | None]:
        compiled = [self._compiled(s, True) for s in batch.limits]
        api = self._compiled(batch.api_limit, False) if batch.api_limit is not None else None
        return compiled, api

    def _compiled(self, spec: LimitSpec, capped: bool) -> Compiled:
        # Specs repeat from check to check: compile each once (bounded cache; cleared if big,
        # and keyed by the cap so a changed sliding_log_max is honoured).
        cache: dict[tuple[LimitSpec, int | None], Compiled] | None = getattr(
            self, "_compile_cache", None
        )
        if cache is None:
            cache = {}
            self._compile_cache = cache
        cap = self.sliding_log_max if capped else None
        key = (spec, cap)
        found = cache.get(key)
        if found is None:
            found = compile_spec(spec, sliding_log_max=cap)
            if len(cache) > 4096:
                cache.clear()
            cache[key] = found
        return found


# --- the Python implementation of one check ---------------------------------------------------


class StateTxn(Protocol):
    """What `run_check` needs from a store, all inside one atomic step."""

    def get_epoch(self, tenant: str) -> int: ...

    def get_idempotency(self, tenant: str, key: str) -> tuple[str, str] | None:
        """(fingerprint, stored result) or None."""

    def put_idempotency(
        self, tenant: str, key: str, fingerprint: str, stored: str, ttl_ms: int
    ) -> None: ...

    def load(self, tenant: str, key: str, algorithm: Algorithm) -> Any:
        """FixedState | BucketState | list[int] (a sorted log) | None."""

    def save(self, tenant: str, key: str, algorithm: Algorithm, state: Any, ttl_ms: int) -> None:
        """Write a limit's new state; a sliding log's state is its full sorted entry list."""

    def add_receipt(
        self, tenant: str, receipt_id: str, facts: str, result: str, now: int
    ) -> None: ...


@dataclass(slots=True)
class _Pending:
    spec: LimitSpec
    compiled: Compiled
    verdict: Verdict
    state: Any
    ttl_ms: int


def _evaluate(txn: StateTxn, tenant: str, spec: LimitSpec, c: Compiled, now: int) -> _Pending:
    key = storage_key(spec)
    state = txn.load(tenant, key, spec.algorithm)
    if spec.algorithm is Algorithm.FIXED_WINDOW:
        verdict, new_state, ttl = algorithms.fixed_window(c, state, now)
        return _Pending(spec, c, verdict, new_state, ttl)
    if spec.algorithm is Algorithm.SLIDING_WINDOW_LOG:
        entries: list[int] = state or []
        live = entries[algorithms.sliding_live_from(entries, now, c.window_ms) :]
        verdict = algorithms.sliding_log(c, live, now)
        if live and live[-1] > now:
            # Entries from a clock ahead of this one: keep the list sorted.
            merged = sorted([*live, *([now] * c.n)])
        else:
            merged = [*live, *([now] * c.n)]
        return _Pending(spec, c, verdict, merged, c.window_ms)
    verdict, bucket_state, ttl = algorithms.bucket(c, state, now)
    return _Pending(spec, c, verdict, bucket_state, ttl)


def run_check(
    txn: StateTxn,
    batch: CheckBatch,
    compiled: Sequence[Compiled],
    api_compiled: Compiled | None,
    now: int,
) -> CheckResult:
    tenant = batch.tenant
    api_pending: _Pending | None = None
    api_wire: ItemWire | None = None
    if batch.api_limit is not None and api_compiled is not None:
        api_pending = _evaluate(txn, tenant, batch.api_limit, api_compiled, now)
        api_wire = verdict_wire(api_pending.verdict)
        if not api_pending.verdict.allowed:
            return build_decided(
                batch,
                compiled,
                now,
                False,
                api_wire,
                [],
                epoch=None,
                outcome=Outcome.API_LIMITED,
            )

    epoch: int | None = None
    if batch.expected_epoch is not None:
        epoch = txn.get_epoch(tenant)
        if epoch != batch.expected_epoch:
            return CheckResult(
                outcome=Outcome.STALE_POLICIES, now_ms=now, allowed=False, epoch=epoch
            )

    def consume_api() -> None:
        if api_pending is not None:
            txn.save(
                tenant,
                storage_key(api_pending.spec),
                api_pending.spec.algorithm,
                api_pending.state,
                api_pending.ttl_ms,
            )

    idem = batch.idempotency
    if idem is not None:
        stored = txn.get_idempotency(tenant, idem.key)
        if stored is not None:
            consume_api()
            fingerprint, payload = stored
            if fingerprint != idem.fingerprint:
                return CheckResult(
                    outcome=Outcome.IDEMPOTENCY_MISMATCH,
                    now_ms=now,
                    allowed=False,
                    api=build_decided(batch, compiled, now, False, api_wire, [], epoch=epoch).api,
                    epoch=epoch,
                )
            return result_from_stored(batch, compiled, payload, epoch=epoch, api_now=api_wire)

    pending = [
        _evaluate(txn, tenant, spec, c, now) for spec, c in zip(batch.limits, compiled, strict=True)
    ]
    allowed = all(p.verdict.allowed for p in pending if not p.spec.shadow)
    if allowed and not batch.dry_run:
        for p in pending:
            if p.verdict.allowed:
                txn.save(tenant, storage_key(p.spec), p.spec.algorithm, p.state, p.ttl_ms)
    consume_api()

    items = [verdict_wire(p.verdict) for p in pending]
    receipt_id = batch.receipt.receipt_id if batch.receipt is not None else ""
    stored_text: str | None = None
    if idem is not None or batch.receipt is not None:
        stored_text = encode_decided(now, allowed, api_wire, items, receipt_id)
    if idem is not None and stored_text is not None and (allowed or idem.store_denials):
        facts = batch.receipt.facts if batch.receipt is not None else ""
        txn.put_idempotency(
            tenant,
            idem.key,
            idem.fingerprint,
            stored_text + "\n" + facts,
            idem.ttl_seconds * 1000,
        )
    if batch.receipt is not None and stored_text is not None:
        txn.add_receipt(tenant, batch.receipt.receipt_id, batch.receipt.facts, stored_text, now)
    return build_decided(
        batch,
        compiled,
        now,
        allowed,
        api_wire,
        items,
        epoch=epoch,
        receipt_id=receipt_id or None,
        receipt_written=batch.receipt is not None,
    )


class DatabaseStoreBase(Store, ABC):
    """The hook for the Django app's `DatabaseStore` (the embedded default).

    A subclass implements `transaction()` as a context manager yielding a `StateTxn` whose
    reads lock their rows (SELECT ... FOR UPDATE, in `lock_order` order so that concurrent
    checks never deadlock), and the epoch/receipt methods. The math stays in
    `ratelimits.engine.algorithms` via `run_check`.
    """

    @staticmethod
    def lock_order(batch: CheckBatch) -> list[str]:
        keys = {storage_key(s) for s in batch.limits}
        if batch.api_limit is not None:
            keys.add(storage_key(batch.api_limit))
        return sorted(keys)
