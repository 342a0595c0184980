"""One check = many limits and side items, all in one atomic step (memory and Redis)."""

from __future__ import annotations

import json

import pytest

from ratelimits.engine import (
    Algorithm,
    CheckBatch,
    FailMode,
    IdempotencySpec,
    LimitSpec,
    Outcome,
    ReceiptSpec,
    Store,
)
from ratelimits.engine.stores.base import decode_decided

from .conftest import T0


def fw(key: str, limit: int, **kw: object) -> LimitSpec:
    return LimitSpec(
        key=key, algorithm=Algorithm.FIXED_WINDOW, limit=limit, window_seconds=3600, **kw
    )  # type: ignore[arg-type]


def api_bucket(limit: int) -> LimitSpec:
    return LimitSpec(
        key="api:rate_limit_check",
        algorithm=Algorithm.TOKEN_BUCKET,
        limit=limit,
        window_seconds=60,
    )


def check(store: Store, tenant: str, *limits: LimitSpec, now: int = T0, **kw: object):
    result = store.check(CheckBatch(tenant=tenant, limits=limits, **kw), now_ms=now)  # type: ignore[arg-type]
    assert not result.degraded, result.degraded_reason
    return result


def used(store: Store, tenant: str, spec: LimitSpec) -> int:
    """How much of a fixed window is used, read with a dry run (which consumes nothing)."""
    d = check(store, tenant, spec, dry_run=True).decisions[0]
    return spec.limit - d.remaining - (spec.cost if d.allowed else 0)


def test_multi_policy_check_consumes_only_if_all_admit(store: Store, tenant: str):
    a, b = fw("a", 5), fw("b", 3)
    for _ in range(3):
        assert check(store, tenant, a, b).allowed
    denied = check(store, tenant, a, b)
    assert not denied.allowed
    assert [d.allowed for d in denied.decisions] == [True, False]
    assert denied.deciding is not None and denied.deciding.key == "b"
    # a admitted on its own but was not consumed: the check was denied as a whole.
    assert used(store, tenant, a) == 3
    assert used(store, tenant, b) == 3
    assert [check(store, tenant, a).allowed for _ in range(3)] == [True, True, False]


def test_multi_policy_mixed_algorithms_all_or_nothing(store: Store, tenant: str):
    specs = [
        LimitSpec(key="p1", algorithm=Algorithm.SLIDING_WINDOW_LOG, limit=4, window_seconds=60),
        LimitSpec(key="p2", algorithm=Algorithm.TOKEN_BUCKET, limit=2, window_seconds=60),
        LimitSpec(key="p3", algorithm=Algorithm.LEAKY_BUCKET, limit=6, window_seconds=60),
    ]
    assert [check(store, tenant, *specs).allowed for _ in range(3)] == [True, True, False]
    alone = check(store, tenant, specs[0], specs[2])
    assert alone.allowed
    assert alone.decisions[0].remaining == 1  # 2 + 1 used of 4
    assert alone.decisions[1].remaining == 3  # 2 + 1 used of 6


def test_deciding_policy_is_the_tightest_when_admitted(store: Store, tenant: str):
    r = check(store, tenant, fw("wide", 100), fw("narrow", 2))
    assert r.allowed
    assert r.deciding is not None and r.deciding.key == "narrow"
    assert r.remaining == 1


def test_shadow_policy_reports_but_never_denies(store: Store, tenant: str):
    enforce, shadow = fw("e", 10), fw("s", 1, shadow=True)
    first = check(store, tenant, enforce, shadow)
    assert first.allowed and not first.shadow_denied
    second = check(store, tenant, enforce, shadow)
    assert second.allowed and second.shadow_denied
    assert second.deciding is not None and second.deciding.key == "e"
    assert used(store, tenant, enforce) == 2
    assert used(store, tenant, shadow) == 1


def test_denied_check_with_shadow_consumes_nothing(store: Store, tenant: str):
    enforce, shadow = fw("e", 1), fw("s", 10, shadow=True)
    assert check(store, tenant, enforce, shadow).allowed
    assert not check(store, tenant, enforce, shadow).allowed
    assert used(store, tenant, shadow) == 1


def test_dry_run_consumes_nothing(store: Store, tenant: str):
    s = fw("a", 2)
    for _ in range(5):
        r = check(store, tenant, s, dry_run=True)
        assert r.allowed and r.decisions[0].remaining == 1
    assert [check(store, tenant, s).allowed for _ in range(3)] == [True, True, False]


def test_no_limits_is_allowed(store: Store, tenant: str):
    r = check(store, tenant)
    assert r.allowed and r.decisions == () and r.deciding is None


# --- this API's own limit in the same step -------------------------------------------------


def test_api_limit_refusal_evaluates_and_consumes_nothing_else(store: Store, tenant: str):
    policy, api = fw("a", 100), api_bucket(2)
    assert check(store, tenant, policy, api_limit=api).allowed
    assert check(store, tenant, policy, api_limit=api).allowed
    limited = check(store, tenant, policy, api_limit=api)
    assert limited.outcome is Outcome.API_LIMITED
    assert limited.api is not None and not limited.api.allowed
    assert limited.api.retry_after == 30  # 2 per minute drains one every 30 s
    assert limited.decisions == ()
    assert used(store, tenant, policy) == 2


def test_api_limit_consumes_even_when_the_policy_denies(store: Store, tenant: str):
    policy, api = fw("a", 1), api_bucket(3)
    assert check(store, tenant, policy, api_limit=api).allowed
    denied = check(store, tenant, policy, api_limit=api)
    assert denied.outcome is Outcome.DECIDED and not denied.allowed
    assert denied.api is not None and denied.api.remaining == 1
    assert check(store, tenant, policy, api_limit=api, dry_run=True).api.remaining == 0  # type: ignore[union-attr]
    assert check(store, tenant, policy, api_limit=api).outcome is Outcome.API_LIMITED


# --- policy epoch ---------------------------------------------------------------------------


def test_stale_policy_epoch_answers_stale_and_consumes_nothing(store: Store, tenant: str):
    policy, api = fw("a", 5), api_bucket(10)
    assert store.get_epoch(tenant) == 0
    assert check(store, tenant, policy, expected_epoch=0).epoch == 0
    assert store.bump_epoch(tenant) == 1
    stale = check(store, tenant, policy, api_limit=api, expected_epoch=0)
    assert stale.outcome is Outcome.STALE_POLICIES
    assert stale.epoch == 1
    assert used(store, tenant, policy) == 1
    fresh = check(store, tenant, policy, api_limit=api, expected_epoch=1)
    assert fresh.outcome is Outcome.DECIDED
    assert fresh.api is not None and fresh.api.remaining == 9


# --- idempotency key in the same step --------------------------------------------------------


def test_idempotency_key_replays_the_first_decision_and_consumes_nothing(store: Store, tenant: str):
    policy = fw("a", 5)
    idem = IdempotencySpec(key="k1", fingerprint="fp-1")
    first = check(store, tenant, policy, idempotency=idem, receipt=ReceiptSpec("r-1", "{}"))
    assert first.outcome is Outcome.DECIDED and first.allowed
    replay = check(
        store, tenant, policy, idempotency=idem, receipt=ReceiptSpec("r-2", "{}"), now=T0 + 5000
    )
    assert replay.outcome is Outcome.REPLAYED
    assert replay.allowed
    assert replay.receipt_id == "r-1"
    assert replay.now_ms == T0
    assert replay.decisions == first.decisions
    assert used(store, tenant, policy) == 1

    other = check(store, tenant, policy, idempotency=IdempotencySpec(key="k1", fingerprint="x"))
    assert other.outcome is Outcome.IDEMPOTENCY_MISMATCH
    assert used(store, tenant, policy) == 1


def test_api_limited_check_does_not_store_its_idempotency_key(store: Store, tenant: str):
    policy, api = fw("a", 5), api_bucket(1)
    assert check(store, tenant, policy, api_limit=api).allowed
    idem = IdempotencySpec(key="k", fingerprint="fp")
    assert check(store, tenant, policy, api_limit=api, idempotency=idem).outcome is (
        Outcome.API_LIMITED
    )
    decided = check(store, tenant, policy, idempotency=idem)
    assert decided.outcome is Outcome.DECIDED


# --- receipts facts in the same step ----------------------------------------------------------


def test_receipt_facts_are_stored_with_the_decision(store: Store, tenant: str):
    a, b = fw("a", 1), fw("b", 5)
    facts = json.dumps({"inputs": {"resource_type": "llm"}}, sort_keys=True)
    r1 = check(store, tenant, a, b, receipt=ReceiptSpec("rid-1", facts))
    r2 = check(store, tenant, a, b, receipt=ReceiptSpec("rid-2", facts), now=T0 + 7)
    assert r1.receipt_written and r1.receipt_id == "rid-1"
    stored = store.read_receipts(tenant)
    assert [s.receipt_id for s in stored] == ["rid-1", "rid-2"]
    assert stored[0].facts == facts
    assert stored[1].timestamp_ms == T0 + 7
    now_ms, allowed, api, items, rid = decode_decided(stored[1].result)
    assert (now_ms, allowed, api, rid) == (T0 + 7, False, None, "rid-2")
    assert items == [[0, 0, T0 + 3600_000, 3600_000 - 7, 0], [1, 3, T0 + 3600_000, 0, 0]]
    assert not r2.allowed
    assert tenant in store.receipt_tenants()
    assert store.ack_receipts(tenant, [s.entry_id for s in stored]) == 2
    assert store.read_receipts(tenant) == []
    assert tenant not in store.receipt_tenants()


def test_a_receipt_per_decision_none_for_stale_or_api_limited(store: Store, tenant: str):
    policy, api = fw("a", 1), api_bucket(3)
    check(store, tenant, policy, api_limit=api, receipt=ReceiptSpec("r1", "{}"))
    check(store, tenant, policy, api_limit=api, receipt=ReceiptSpec("r2", "{}"))  # denied
    check(
        store, tenant, policy, api_limit=api, receipt=ReceiptSpec("r3", "{}"), expected_epoch=7
    )  # stale
    check(store, tenant, policy, api_limit=api, receipt=ReceiptSpec("r4", "{}"))
    check(store, tenant, policy, api_limit=api, receipt=ReceiptSpec("r5", "{}"))  # api limited
    assert [r.receipt_id for r in store.read_receipts(tenant)] == ["r1", "r2", "r4"]


# --- degraded answers by fail mode (the store's own code path, no outage needed) --------------


@pytest.mark.parametrize(("mode", "allowed"), [(FailMode.OPEN, True), (FailMode.CLOSED, False)])
def test_degraded_result_follows_each_policys_fail_mode(mode: FailMode, allowed: bool):
    from ratelimits.engine.stores.base import degraded_result

    batch = CheckBatch(tenant="t", limits=[fw("a", 10, fail_mode=mode)], api_limit=api_bucket(5))
    r = degraded_result(batch, T0, "timeout")
    assert r.degraded and r.allowed is allowed
    assert r.decisions[0].degraded
    assert r.api is not None and r.api.allowed
    if not allowed:
        assert r.decisions[0].retry_after == 1


def test_idempotent_replay_carries_the_first_facts_and_items(store: Store, tenant: str):
    policy = fw("a", 5)
    idem = IdempotencySpec(key="k2", fingerprint="fp")
    check(store, tenant, policy, idempotency=idem, receipt=ReceiptSpec("r-1", '{"f":1}'))
    replay = check(store, tenant, fw("b", 9), idempotency=idem, receipt=ReceiptSpec("r-2", "{}"))
    assert replay.outcome is Outcome.REPLAYED
    assert replay.replay_facts == '{"f":1}'
    assert replay.replay_items == [[1, 4, T0 + 3600_000, 0, 0]]


def test_idempotency_can_leave_denials_unstored(store: Store, tenant: str):
    policy = fw("a", 1)
    assert check(store, tenant, policy).allowed
    idem = IdempotencySpec(key="k3", fingerprint="fp", store_denials=False)
    assert not check(store, tenant, policy, idempotency=idem).allowed
    # The denial freed the key: the retry is decided again, not replayed.
    again = check(store, tenant, policy, idempotency=idem)
    assert again.outcome is Outcome.DECIDED


@pytest.mark.redis
def test_receipt_streams_are_found_by_scan_when_the_index_lost_them(
    make_redis_store, tenant: str, redis_client
):
    store = make_redis_store()
    check(store, tenant, fw("a", 5), receipt=ReceiptSpec("r-1", "{}"))
    redis_client.srem(store.receipt_index_key, tenant)
    assert tenant not in store.receipt_tenants()
    assert tenant in store.scan_receipt_tenants()
