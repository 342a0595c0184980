"""The Redis store's own promises: one script, keys and expiries, clock, faults, parity."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from ratelimits.engine import (
    Algorithm,
    CheckBatch,
    CircuitBreaker,
    FailMode,
    IdempotencySpec,
    LimitSpec,
    MemoryStore,
    ReceiptSpec,
    RedisStore,
)
from ratelimits.engine.clock import ManualClock
from ratelimits.engine.stores import redis as redis_module

from .conftest import T0

pytestmark = pytest.mark.redis


def spec(key: str = "p:k", algorithm: Algorithm = Algorithm.FIXED_WINDOW, **kw: object):
    options: dict[str, object] = {"limit": 5, "window_seconds": 60}
    options.update(kw)
    return LimitSpec(key=key, algorithm=algorithm, **options)  # type: ignore[arg-type]


def test_injected_clock_is_refused_unless_allowed(make_redis_store: Callable[..., RedisStore]):
    store = make_redis_store(allow_injected_clock=False)
    with pytest.raises(ValueError, match="allow_injected_clock"):
        store.check(CheckBatch(tenant="t", limits=[spec()]), now_ms=T0)


def test_clock_is_redis_time_when_not_injected(
    make_redis_store: Callable[..., RedisStore], tenant: str, redis_client: redis.Redis
):
    store = make_redis_store(allow_injected_clock=False)
    seconds, micros = redis_client.time()
    r = store.check(CheckBatch(tenant=tenant, limits=[spec(window_seconds=3600)]))
    assert r.allowed and not r.degraded
    assert abs(r.now_ms - (seconds * 1000 + micros // 1000)) < 2000
    assert r.decisions[0].reset_ms % 3_600_000 == 0


def test_every_key_carries_the_tenant_hash_tag_and_an_expiry(
    make_redis_store: Callable[..., RedisStore],
    tenant: str,
    redis_client: redis.Redis,
    key_prefix: str,
):
    store = make_redis_store()
    limits = [spec("a", algorithm) for algorithm in Algorithm]
    api = spec("api:default", Algorithm.TOKEN_BUCKET, limit=100)
    store.check(
        CheckBatch(
            tenant=tenant,
            limits=limits,
            api_limit=api,
            idempotency=IdempotencySpec(key="idem-1", fingerprint="fp"),
            receipt=ReceiptSpec("rid", "{}"),
        ),
        now_ms=int(time.time() * 1000),
    )
    keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{key_prefix}:*"))
    tenant_keys = [k for k in keys if k.startswith(f"{key_prefix}:{{{tenant}}}:")]
    assert len(tenant_keys) == 7  # 4 limits, the API bucket, idempotency, receipts
    # One Redis Cluster slot for the whole check.
    assert len({key_slot(k.encode()) for k in tenant_keys}) == 1
    for key in keys:
        assert redis_client.pttl(key) > 0, key


def test_a_tenant_with_braces_keeps_one_hash_tag(make_redis_store: Callable[..., RedisStore]):
    store = make_redis_store()
    key = store.key_for("a}b{c%", spec())
    tag = key[key.index("{") + 1 : key.index("}")]
    assert tag == "a%7Db%7Bc%25"


def test_script_is_reloaded_after_noscript(
    make_redis_store: Callable[..., RedisStore], tenant: str, monkeypatch: pytest.MonkeyPatch
):
    # A variant of the script the server has never seen: the first EVALSHA meets NOSCRIPT.
    store = make_redis_store()
    fresh = redis_module.CHECK_SCRIPT + f"\n-- {tenant}\n"
    store._script = fresh.encode()
    store._sha = hashlib.sha1(fresh.encode()).hexdigest().encode()
    first = store.check(CheckBatch(tenant=tenant, limits=[spec()]), now_ms=T0)
    assert first.allowed and not first.degraded
    assert (
        store.check(CheckBatch(tenant=tenant, limits=[spec()]), now_ms=T0).decisions[0].remaining
        == 3
    )


def test_one_round_trip_per_check(
    make_redis_store: Callable[..., RedisStore], tenant: str, monkeypatch: pytest.MonkeyPatch
):
    store = make_redis_store()
    # Warm up: the script is loaded, and the tenant's receipt stream is registered for the
    # drainer (a second round trip made only when a stream goes from empty to one entry).
    store.check(
        CheckBatch(tenant=tenant, limits=[spec()], receipt=ReceiptSpec("r0", "{}")), now_ms=T0
    )
    trips: list[bytes] = []
    original = store._roundtrip

    def counting(payload: bytes) -> bytes:
        trips.append(payload)
        return original(payload)

    monkeypatch.setattr(store, "_roundtrip", counting)
    monkeypatch.setattr(store, "admin", lambda: pytest.fail("no second client call"))
    batch = CheckBatch(
        tenant=tenant,
        limits=[
            spec("a"),
            spec("b", Algorithm.SLIDING_WINDOW_LOG),
            spec("c", Algorithm.LEAKY_BUCKET),
        ],
        api_limit=spec("api", Algorithm.TOKEN_BUCKET, limit=50),
        expected_epoch=0,
        idempotency=IdempotencySpec(key="x", fingerprint="y"),
        receipt=ReceiptSpec("r", "{}"),
    )
    assert store.check(batch, now_ms=T0 + 1).allowed
    assert len(trips) == 1
    assert trips[0].startswith(b"*") and b"EVALSHA" in trips[0]


# --- faults: down, blackholed, breaker ---------------------------------------------------------


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A socket of our own that accepts connections and never answers."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(1)
    for c in accepted:
        c.close()
    server.close()


@pytest.mark.parametrize("target", ["closed_port", "blackhole"])
@pytest.mark.parametrize(("mode", "allowed"), [(FailMode.OPEN, True), (FailMode.CLOSED, False)])
def test_unreachable_redis_answers_by_fail_mode_within_the_timeout(
    target: str, mode: FailMode, allowed: bool, request: pytest.FixtureRequest
):
    port = _closed_port() if target == "closed_port" else request.getfixturevalue("blackhole")
    timeout = 0.05
    store = RedisStore(
        f"redis://127.0.0.1:{port}/0",
        socket_timeout=timeout,
        breaker=CircuitBreaker(failure_threshold=3, reset_timeout=60),
    )
    batch = CheckBatch(tenant="t", limits=[spec(fail_mode=mode)])
    for _ in range(3):
        started = time.perf_counter()
        r = store.check(batch)
        elapsed = time.perf_counter() - started
        assert r.degraded and r.allowed is allowed
        assert r.degraded_reason in {"timeout", "error"}
        # connect + one read, each bounded by the timeout; the slack is for a busy machine:
        # the point is "bounded", not "fast" (a client without a timeout hangs forever).
        assert elapsed < 2 * timeout + 1.0
    # The breaker is open now: a dead Redis costs nothing per request.
    started = time.perf_counter()
    for _ in range(200):
        r = store.check(batch)
        assert r.degraded and r.degraded_reason == "circuit_open" and r.allowed is allowed
    assert (time.perf_counter() - started) / 200 < 0.02
    store.close()


def test_breaker_half_opens_and_closes_when_redis_is_back(
    redis_url: str, key_prefix: str, tenant: str
):
    clock = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=lambda: clock[0])
    dead = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", breaker=breaker)
    assert dead.check(CheckBatch(tenant=tenant, limits=[spec()])).degraded
    assert breaker.state == "open"
    live = RedisStore(redis_url, prefix=key_prefix, breaker=breaker, socket_timeout=2)
    assert live.check(CheckBatch(tenant=tenant, limits=[spec()])).degraded_reason == (
        "circuit_open"
    )
    clock[0] = 5.0
    r = live.check(CheckBatch(tenant=tenant, limits=[spec()]))
    assert not r.degraded and breaker.state == "closed"
    live.close()


# --- Lua and Python agree on every sequence -----------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # which limit
        st.integers(min_value=0, max_value=4000),  # ms to advance
        st.integers(min_value=1, max_value=4),  # cost
        st.booleans(),  # dry run
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=_ops,
    algorithms=st.lists(st.sampled_from(list(Algorithm)), min_size=4, max_size=4),
    limits=st.lists(st.integers(min_value=1, max_value=8), min_size=4, max_size=4),
    windows=st.lists(st.sampled_from([1, 3, 7, 60]), min_size=4, max_size=4),
    bursts=st.lists(st.integers(min_value=0, max_value=3), min_size=4, max_size=4),
    pairs=st.booleans(),
)
def test_lua_script_and_python_algorithms_agree(
    make_redis_store: Callable[..., RedisStore],
    ops: list[tuple[int, int, int, bool]],
    algorithms: list[Algorithm],
    limits: list[int],
    windows: list[int],
    bursts: list[int],
    pairs: bool,
):
    import uuid

    tenant = f"parity-{uuid.uuid4().hex[:10]}"
    redis_store = make_redis_store()
    memory = MemoryStore(clock=ManualClock(T0))
    now = T0 + 123
    for which, advance, cost, dry in ops:
        now += advance
        chosen = [which, (which + 1) % 4] if pairs else [which]
        batch = CheckBatch(
            tenant=tenant,
            dry_run=dry,
            limits=[
                LimitSpec(
                    key=f"k{i}",
                    algorithm=algorithms[i],
                    limit=limits[i],
                    window_seconds=windows[i],
                    burst=bursts[i],
                    cost=cost,
                )
                for i in chosen
            ],
        )
        expected = memory.check(batch, now_ms=now)
        actual = redis_store.check(batch, now_ms=now)
        assert not actual.degraded
        assert actual.allowed == expected.allowed
        assert actual.decisions == expected.decisions
