"""Across processes on PostgreSQL and Redis, and with Redis down or blackholed (no 5xx)."""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections

from ratelimits import runtime
from ratelimits.db_store import DatabaseStore
from ratelimits.engine import Algorithm, CheckBatch, LimitSpec

from .conftest import BASE, check, make_policy

PROCESSES = 2
THREADS = 16
PER_THREAD = 20
DAY = 86_400


def _db_worker(tenant: str, specs: list[LimitSpec], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    connections.close_all()  # never share the parent's socket
    store = DatabaseStore()
    barrier = threading.Barrier(THREADS)
    admitted: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        mine = 0
        for _ in range(PER_THREAD):
            r = store.check(CheckBatch(tenant=tenant, limits=specs))
            assert not r.degraded, r.degraded_reason
            mine += int(r.allowed)
        with lock:
            admitted.append(mine)
        connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(admitted))


def _hammer_db(tenant: str, specs: list[LimitSpec]) -> int:
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_db_worker, args=(tenant, specs, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return total


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_database_store_two_processes_sixteen_threads_admit_exactly_the_limit(algorithm):
    spec = LimitSpec(key="p:hot", algorithm=algorithm, limit=150, window_seconds=DAY)
    assert _hammer_db(f"dbc-{algorithm.value}", [spec]) == 150


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_store_three_policy_check_admits_exactly_the_smallest_limit():
    specs = [
        LimitSpec(key="a", algorithm=Algorithm.TOKEN_BUCKET, limit=180, window_seconds=DAY),
        LimitSpec(key="b", algorithm=Algorithm.SLIDING_WINDOW_LOG, limit=120, window_seconds=DAY),
        LimitSpec(key="c", algorithm=Algorithm.LEAKY_BUCKET, limit=200, window_seconds=DAY),
    ]
    assert _hammer_db("dbc-three", specs) == 120


# --- a policy change reaches another process on its next check ---------------------------


def _checker(
    url_limit: multiprocessing.Queue, go: multiprocessing.Event, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    connections.close_all()
    runtime.reset()
    from rest_framework.test import APIClient

    from budgeting_site.platform.auth import issue_jwt

    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + issue_jwt(tenant_id="t-acme", roles=["service"], sub="svc", ttl_seconds=600)
    )
    first = check(client, dry_run=True).json()["limit_value"]  # snapshot cached here
    out.put(first)
    go.wait(30)
    out.put(check(client, dry_run=True).json()["limit_value"])
    connections.close_all()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["database", "redis"])
def test_policy_change_reaches_another_process_on_its_next_check(kind, settings, admin_client):
    import os

    settings.RATELIMIT_STORE = kind
    settings.REDIS_URL = os.environ.get("REDIS_URL")
    runtime.reset()
    if kind == "redis":
        runtime.policy_store().bump_epoch("t-acme")  # a fresh epoch, whatever ran before
    policy = make_policy(admin_client, limit_value=10)
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    go = ctx.Event()
    child = ctx.Process(target=_checker, args=(None, go, out))
    child.start()
    assert out.get(timeout=60) == 10
    response = admin_client.put(
        f"{BASE}/rate-limits/{policy['policy_id']}",
        {
            "resource_type": "llm.tokens",
            "limit_value": 25,
            "time_window_seconds": 3600,
            "algorithm": "fixed_window",
        },
        format="json",
    )
    assert response.status_code == 200
    go.set()
    assert out.get(timeout=60) == 25
    child.join(30)
    assert child.exitcode == 0


# --- Redis down or blackholed: the fail mode, fast, never a 5xx --------------------------


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def blackhole() -> Iterator[int]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["closed", "blackhole"])
@pytest.mark.parametrize(("fail_mode", "allowed"), [("open", True), ("closed", False)])
def test_unreachable_redis_answers_by_fail_mode_within_the_timeout(
    target, fail_mode, allowed, settings, admin_client, service, request
):
    make_policy(admin_client, limit_value=5, fail_mode=fail_mode)
    port = _closed_port() if target == "closed" else request.getfixturevalue("blackhole")
    settings.RATELIMIT_STORE = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.RATELIMIT_REDIS_TIMEOUT_MS = 50
    runtime.reset()
    from ratelimits.models import PolicyEpoch

    # The snapshot needs the epoch, which lives in Redis too: load it while "Redis" is down.
    PolicyEpoch.objects.all()
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = check(service)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["degraded"] is True and body["allowed"] is allowed
    # The first checks pay the 50 ms timeout; then the breaker answers at once. The bounds
    # only prove "no hang" (a client without a timeout waits forever on a blackhole) with
    # room for a busy CI machine; speed itself is measured in bench/.
    assert timings[0] < 3.0
    assert min(timings[3:]) < 0.5


@pytest.mark.redis
@pytest.mark.django_db
def test_a_lost_epoch_bump_is_retried_by_the_next_check(
    admin_client, service, monkeypatch, settings, django_capture_on_commit_callbacks
):
    # Redis only: the database store bumps inside the change's own transaction.
    import os

    settings.RATELIMIT_STORE = "redis"
    settings.REDIS_URL = os.environ.get("REDIS_URL")
    runtime.reset()
    store = runtime.policy_store()
    before = store.get_epoch("t-acme")

    def down(tenant_id: str) -> int:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(store, "bump_epoch", down)
    with django_capture_on_commit_callbacks(execute=True):
        make_policy(admin_client, limit_value=5)
    assert store.get_epoch("t-acme") == before
    assert runtime.pending_bumps == {"t-acme"}
    monkeypatch.undo()
    assert check(service).json()["limit_value"] == 5
    assert store.get_epoch("t-acme") == before + 1
    assert runtime.pending_bumps == set()
