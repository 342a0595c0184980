"""Exactness of the four algorithms with an injected clock, on memory and on the real Redis."""

from __future__ import annotations

import pytest

from ratelimits.engine import Algorithm, CheckBatch, CheckResult, LimitSpec, Store

from .conftest import T0

HOUR = 3600
MS = 1000


def run(store: Store, tenant: str, now: int, *specs: LimitSpec, **kw: object) -> CheckResult:
    result = store.check(CheckBatch(tenant=tenant, limits=specs, **kw), now_ms=now)  # type: ignore[arg-type]
    assert not result.degraded, result.degraded_reason
    return result


def hammer(store: Store, tenant: str, now: int, spec: LimitSpec, times: int) -> list[CheckResult]:
    return [run(store, tenant, now, spec) for _ in range(times)]


def admitted(results: list[CheckResult]) -> int:
    return sum(r.allowed for r in results)


def spec(algorithm: Algorithm, limit: int, window: int, **kw: object) -> LimitSpec:
    return LimitSpec(key="pol:key", algorithm=algorithm, limit=limit, window_seconds=window, **kw)  # type: ignore[arg-type]


# --- the original system's case: 1000 per hour, 900 requests then 200 more -------------------


def test_fixed_window_1000_per_hour_900_then_200_admits_exactly_1000(store: Store, tenant: str):
    s = spec(Algorithm.FIXED_WINDOW, 1000, HOUR)
    first = hammer(store, tenant, T0 + 5 * 60 * MS, s, 900)
    assert admitted(first) == 900
    assert first[-1].decisions[0].remaining == 100
    assert first[-1].decisions[0].reset_ms == T0 + HOUR * MS

    later = T0 + 40 * 60 * MS
    second = hammer(store, tenant, later, s, 200)
    assert admitted(second) == 100
    assert [r.allowed for r in second] == [True] * 100 + [False] * 100
    last_admitted, first_denied = second[99].decisions[0], second[100].decisions[0]
    assert last_admitted.remaining == 0
    assert first_denied.remaining == 0
    assert first_denied.reset_ms == T0 + HOUR * MS
    assert first_denied.reset_time == (T0 + HOUR * MS) // 1000
    assert first_denied.retry_after == 20 * 60
    assert last_admitted.retry_after is None


def test_sliding_log_1000_per_hour_900_then_200_admits_exactly_1000(store: Store, tenant: str):
    s = spec(Algorithm.SLIDING_WINDOW_LOG, 1000, HOUR)
    t1 = T0 + 5 * 60 * MS
    first = hammer(store, tenant, t1, s, 900)
    assert admitted(first) == 900
    assert first[-1].decisions[0].remaining == 100
    # Admitted: the reset is when the oldest entry leaves.
    assert first[-1].decisions[0].reset_ms == t1 + HOUR * MS

    t2 = T0 + 40 * 60 * MS
    second = hammer(store, tenant, t2, s, 200)
    assert admitted(second) == 100
    denied = second[-1].decisions[0]
    assert denied.remaining == 0
    # One entry must leave for one more request: the oldest, at t1 + W.
    assert denied.reset_ms == t1 + HOUR * MS
    assert denied.retry_after == (t1 + HOUR * MS - t2) // 1000


@pytest.mark.parametrize("algorithm", [Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET])
def test_bucket_1000_per_hour_900_then_200_admits_exactly_1000(
    store: Store, tenant: str, algorithm: Algorithm
):
    s = spec(algorithm, 1000, HOUR)
    first = hammer(store, tenant, T0, s, 900)
    assert admitted(first) == 900
    assert first[-1].decisions[0].remaining == 100
    # 900 requests drain at 1000/h: 3.6 s each.
    assert first[-1].decisions[0].reset_ms == T0 + 900 * 3600

    second = hammer(store, tenant, T0, s, 200)
    assert admitted(second) == 100
    denied = second[-1].decisions[0]
    assert denied.remaining == 0
    assert denied.reset_ms == T0 + HOUR * MS
    assert denied.retry_ms == 3600
    assert denied.retry_after == 4


@pytest.mark.parametrize("algorithm", [Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET])
def test_bucket_900_then_200_after_36_seconds_admits_exactly_ten_more(
    store: Store, tenant: str, algorithm: Algorithm
):
    s = spec(algorithm, 1000, HOUR)
    assert admitted(hammer(store, tenant, T0, s, 900)) == 900
    # 36 s drain exactly 10 requests of 3.6 s.
    second = hammer(store, tenant, T0 + 36 * MS, s, 200)
    assert admitted(second) == 110
    assert second[109].decisions[0].remaining == 0


# --- token bucket: refill over stepped time, never above capacity ----------------------------


def test_token_bucket_refills_over_stepped_time_and_never_exceeds_capacity(
    store: Store, tenant: str
):
    s = spec(Algorithm.TOKEN_BUCKET, 10, 10)  # 1 token per second
    assert admitted(hammer(store, tenant, T0, s, 12)) == 10

    assert run(store, tenant, T0 + 999, s).allowed is False
    r = run(store, tenant, T0 + 1000, s)
    assert r.allowed and r.decisions[0].remaining == 0
    assert run(store, tenant, T0 + 1000, s).allowed is False

    # 5.5 s later: 5.5 tokens back; a dry run reports what would remain after it (4.5 -> 4).
    r = run(store, tenant, T0 + 6500, s, dry_run=True)
    assert r.decisions[0].remaining == 4
    assert admitted(hammer(store, tenant, T0 + 6500, s, 7)) == 5

    # An idle hour refills to capacity and no further.
    r = run(store, tenant, T0 + HOUR * MS, s, dry_run=True)
    assert r.decisions[0].remaining == 9
    assert r.decisions[0].reset_ms == T0 + HOUR * MS + 1000
    assert admitted(hammer(store, tenant, T0 + HOUR * MS, s, 15)) == 10


def test_token_bucket_burst_adds_capacity_but_not_rate(store: Store, tenant: str):
    s = spec(Algorithm.TOKEN_BUCKET, 10, 10, burst=5)
    assert admitted(hammer(store, tenant, T0, s, 20)) == 15
    # Drain is still limit/W = 1 per second.
    assert admitted(hammer(store, tenant, T0 + 3000, s, 5)) == 3


def test_token_bucket_request_count_consumes_n_and_denied_consumes_nothing(
    store: Store, tenant: str
):
    s10 = spec(Algorithm.TOKEN_BUCKET, 10, 10, cost=4)
    assert [run(store, tenant, T0, s10).allowed for _ in range(3)] == [True, True, False]
    s2 = spec(Algorithm.TOKEN_BUCKET, 10, 10, cost=2)
    r = run(store, tenant, T0, s2)
    assert r.allowed and r.decisions[0].remaining == 0


# --- leaky bucket: drains at the stated rate, delay_seconds -----------------------------------


def test_leaky_bucket_drains_at_stated_rate_and_reports_delay(store: Store, tenant: str):
    s = spec(Algorithm.LEAKY_BUCKET, 60, 60)  # 1 request per second
    results = hammer(store, tenant, T0, s, 61)
    assert admitted(results) == 60
    # Each admitted request waits for the queue ahead of it: 0 s, 1 s, ..., 59 s.
    assert [r.decisions[0].delay_seconds for r in results[:60]] == [float(i) for i in range(60)]
    assert results[60].decisions[0].delay_ms == 0
    assert results[60].decisions[0].retry_ms == 1000

    # 30 s later 30 have drained: 30 places free, and the next one waits 30 s.
    r = run(store, tenant, T0 + 30_000, s)
    assert r.allowed
    assert r.decisions[0].delay_seconds == 30.0
    assert r.decisions[0].remaining == 29
    assert r.decisions[0].reset_ms == T0 + 30_000 + 31_000

    # A quarter second drains a quarter request: the delay is exact to the millisecond.
    r = run(store, tenant, T0 + 30_250, s)
    assert r.decisions[0].delay_ms == 30_750


# --- sliding log: entries age out at exactly W -------------------------------------------------


def test_sliding_log_entries_age_out_at_exactly_w(store: Store, tenant: str):
    s = spec(Algorithm.SLIDING_WINDOW_LOG, 3, 10)
    for t in (0, 4000, 8000):
        assert run(store, tenant, T0 + t, s).allowed
    denied = run(store, tenant, T0 + 9999, s)
    assert not denied.allowed
    assert denied.decisions[0].reset_ms == T0 + 10_000
    assert denied.decisions[0].retry_ms == 1

    assert run(store, tenant, T0 + 10_000, s).allowed  # the entry at T0 has left
    assert not run(store, tenant, T0 + 13_999, s).allowed
    r = run(store, tenant, T0 + 14_000, s)
    assert r.allowed
    assert r.decisions[0].remaining == 0
    assert r.decisions[0].reset_ms == T0 + 8000 + 10_000


def test_sliding_log_members_are_unique_within_one_millisecond(store: Store, tenant: str):
    s = spec(Algorithm.SLIDING_WINDOW_LOG, 50, 10, cost=7)
    results = hammer(store, tenant, T0, s, 8)
    assert admitted(results) == 7
    assert results[6].decisions[0].remaining == 1
    assert run(store, tenant, T0, spec(Algorithm.SLIDING_WINDOW_LOG, 50, 10)).allowed
    assert not run(store, tenant, T0, spec(Algorithm.SLIDING_WINDOW_LOG, 50, 10)).allowed


def test_sliding_log_reset_for_n_requests_waits_for_enough_oldest_entries(
    store: Store, tenant: str
):
    s = spec(Algorithm.SLIDING_WINDOW_LOG, 5, 10)
    for t in range(5):
        assert run(store, tenant, T0 + t * 1000, s).allowed
    big = spec(Algorithm.SLIDING_WINDOW_LOG, 5, 10, cost=3)
    denied = run(store, tenant, T0 + 5000, big)
    # 3 must leave: the third oldest (at T0 + 2 s) leaves at T0 + 12 s.
    assert denied.decisions[0].reset_ms == T0 + 12_000
    assert run(store, tenant, T0 + 12_000, big).allowed


def test_sliding_log_is_capped_by_the_store_maximum(store: Store, tenant: str):
    store.sliding_log_max = 20
    s = spec(Algorithm.SLIDING_WINDOW_LOG, 1000, 60)
    results = hammer(store, tenant, T0, s, 25)
    assert admitted(results) == 20
    assert results[0].decisions[0].limit == 20


# --- fixed window alignment --------------------------------------------------------------------


def test_fixed_window_is_aligned_to_multiples_of_w_since_the_epoch(store: Store, tenant: str):
    s = spec(Algorithm.FIXED_WINDOW, 2, 60)
    edge = T0 + 60_000 * 7
    assert admitted(hammer(store, tenant, edge - 1, s, 3)) == 2
    r = run(store, tenant, edge - 1, s)
    assert r.decisions[0].reset_ms == edge and r.decisions[0].retry_ms == 1
    # The next millisecond is a new window.
    assert admitted(hammer(store, tenant, edge, s, 3)) == 2


# --- one counter serves every priority ----------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_one_counter_serves_all_priorities_so_low_priority_is_cut_first(
    store: Store, tenant: str, algorithm: Algorithm
):
    # The same policy key measured against L=10 (normal) and L=5 (low, x0.5).
    normal = spec(algorithm, 10, 3600)
    low = spec(algorithm, 5, 3600, drain_limit=10)
    normal = LimitSpec(key=low.key, algorithm=algorithm, limit=10, window_seconds=3600)
    assert admitted(hammer(store, tenant, T0, normal, 5)) == 5
    assert not run(store, tenant, T0, low).allowed
    assert admitted(hammer(store, tenant, T0, normal, 10)) == 5
