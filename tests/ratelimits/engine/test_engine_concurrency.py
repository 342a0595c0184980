"""2 processes x 16 threads against the real Redis: admitted == limit, exactly.

Windows are a day long, so nothing refills while the test runs (a 1-day token bucket of 300
drains one request every 288 s). The fixed window uses an injected instant in mid-window so a
run at midnight UTC cannot straddle two windows; the others run on Redis TIME.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence

import pytest

from ratelimits.engine import Algorithm, CheckBatch, LimitSpec, RedisStore

from .conftest import T0, TEST_SOCKET_TIMEOUT

pytestmark = pytest.mark.redis

PROCESSES = 2
THREADS = 16
PER_THREAD = 30  # 960 attempts against limits of a few hundred
DAY = 86_400


def _worker(
    url: str,
    prefix: str,
    tenant: str,
    combos: Sequence[Sequence[LimitSpec]],
    now_ms: int | None,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    store = RedisStore(
        url, prefix=prefix, allow_injected_clock=True, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    barrier = threading.Barrier(THREADS)
    results: list[tuple[int, int, int]] = []  # (combo index, allowed, degraded)
    lock = threading.Lock()

    def run(thread_index: int) -> None:
        combo_index = thread_index % len(combos)
        batch = CheckBatch(tenant=tenant, limits=combos[combo_index])
        barrier.wait()
        mine = []
        for _ in range(PER_THREAD):
            r = store.check(batch, now_ms=now_ms)
            mine.append((combo_index, int(r.allowed), int(r.degraded)))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    out.put(results)


def _hammer(
    url: str,
    prefix: str,
    tenant: str,
    combos: Sequence[Sequence[LimitSpec]],
    now_ms: int | None = None,
) -> list[tuple[int, int, int]]:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_worker, args=(url, prefix, tenant, combos, now_ms, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        results.extend(out.get(timeout=120))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(results) == PROCESSES * THREADS * PER_THREAD
    assert not any(degraded for _, _, degraded in results)
    return results


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_two_processes_sixteen_threads_admit_exactly_the_limit(
    algorithm: Algorithm, redis_url: str, key_prefix: str, tenant: str
):
    limit = 300
    policy = LimitSpec(key="p:hot", algorithm=algorithm, limit=limit, window_seconds=DAY)
    now = T0 + DAY * 500 if algorithm is Algorithm.FIXED_WINDOW else None
    results = _hammer(redis_url, key_prefix, tenant, [[policy]], now)
    assert sum(allowed for _, allowed, _ in results) == limit


def test_three_policy_checks_never_take_any_policy_over_its_limit(
    redis_url: str, key_prefix: str, tenant: str
):
    a = LimitSpec(key="a", algorithm=Algorithm.TOKEN_BUCKET, limit=150, window_seconds=DAY)
    b = LimitSpec(key="b", algorithm=Algorithm.SLIDING_WINDOW_LOG, limit=200, window_seconds=DAY)
    c = LimitSpec(key="c", algorithm=Algorithm.LEAKY_BUCKET, limit=250, window_seconds=DAY)
    d = LimitSpec(key="d", algorithm=Algorithm.FIXED_WINDOW, limit=400, window_seconds=DAY)
    # Every thread checks three policies at once; the combinations overlap.
    combos = [[a, b, c], [b, c, d], [a, c, d], [a, b, d]]
    results = _hammer(redis_url, key_prefix, tenant, combos, None)
    use = {s.key: 0 for s in (a, b, c, d)}
    for combo_index, allowed, _ in results:
        if allowed:
            for s in combos[combo_index]:
                use[s.key] += s.cost
    for s in (a, b, c, d):
        assert use[s.key] <= s.limit, (s.key, use)
    # The stores agree with what was admitted: a dry run sees exactly that use.
    store = RedisStore(redis_url, prefix=key_prefix, socket_timeout=TEST_SOCKET_TIMEOUT)
    for s in (a, b, c, d):
        d_ = store.check(CheckBatch(tenant=tenant, limits=[s], dry_run=True)).decisions[0]
        assert s.limit - d_.remaining - (1 if d_.allowed else 0) == use[s.key], s.key
    # Contention really happened: with 960 attempts every combination ends blocked, so at
    # least one policy was filled to exactly its limit.
    assert any(use[s.key] == s.limit for s in (a, b, c, d)), use
    store.close()


def test_three_policy_check_admits_exactly_the_smallest_limit(
    redis_url: str, key_prefix: str, tenant: str
):
    specs = [
        LimitSpec(key="x", algorithm=Algorithm.FIXED_WINDOW, limit=500, window_seconds=DAY),
        LimitSpec(key="y", algorithm=Algorithm.TOKEN_BUCKET, limit=230, window_seconds=DAY),
        LimitSpec(key="z", algorithm=Algorithm.SLIDING_WINDOW_LOG, limit=400, window_seconds=DAY),
    ]
    results = _hammer(redis_url, key_prefix, tenant, [specs], T0 + DAY * 500)
    assert sum(allowed for _, allowed, _ in results) == 230
