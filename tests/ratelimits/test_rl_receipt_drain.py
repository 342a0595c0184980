"""Two worker processes draining the same receipt stream (PostgreSQL, real Redis).

Celery's prefork pool runs `ratelimits.drain_receipts` in whichever process is free, so two
drains can read the same stream entries at once. Each decision must still get exactly one
receipt, and neither drain may fail.
"""

from __future__ import annotations

import multiprocessing

import pytest
from django.db import connections

from ratelimits import runtime, services
from receipts.models import Receipt

from .conftest import check, make_policy

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

DECISIONS = 240
BATCH = 20


def _drain(barrier, out) -> None:  # type: ignore[no-untyped-def]
    connections.close_all()  # never share the parent's socket
    runtime.reset()
    try:
        barrier.wait(timeout=30)
        out.put(("ok", services.drain_receipts(limit_per_tenant=BATCH, full_scan=False)))
    except Exception as exc:  # the parent reports what a drain raised
        out.put(("error", repr(exc)))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rl_store", ["redis"], indirect=True)
def test_two_processes_draining_one_stream_write_each_receipt_once(rl_store, service, admin_client):
    make_policy(admin_client, limit_value=DECISIONS // 2)
    ids = [check(service).json()["receipt_id"] for _ in range(DECISIONS)]
    assert len(set(ids)) == DECISIONS

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_drain, args=(barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)

    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    stored = Receipt.objects.filter(gate_id="rate-limit-check", tenant_id="t-acme")
    assert sorted(str(r) for r in stored.values_list("receipt_id", flat=True)) == sorted(ids)
    assert stored.filter(decision_status="pass").count() == DECISIONS // 2
    # The stream is empty: a third drain finds nothing to write.
    assert services.drain_receipts(full_scan=True) == 0
