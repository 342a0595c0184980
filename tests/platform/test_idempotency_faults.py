"""An Idempotency-Key claim never outlives its request (PostgreSQL, real connections).

The request that dies with its database connection (terminated at the commit that would store
its answer, or its process gone while the handler ran) leaves no claim that a retry takes for
"in flight": the retry runs. A claim whose owner is alive still answers 409.
"""

import contextlib
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.http import HttpResponse

from budgeting_site.platform import clock, idempotency
from budgeting_site.platform.errors import Conflict
from budgeting_site.platform.models import AuditLogEntry, IdempotencyRecord

pytestmark = [pytest.mark.postgres, pytest.mark.urls("tests.platform.urls")]

URL = "/budget/v1/_test/widgets"
TENANT = "t-acme"


@pytest.fixture
def admin(api, auth):
    return auth(api, TENANT, ["tenant_admin"])


def _disarm() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_die_at_commit ON platform_idempotencyrecord")
        cursor.execute("DROP FUNCTION IF EXISTS test_die_at_commit()")


@pytest.fixture
def terminate_at_commit_of():
    """Terminate the backend at the COMMIT that stores the answer for one key: a deferred
    constraint trigger runs at commit time and ends its own backend, as pg_terminate_backend
    from an operator would at that instant."""

    def arm(key: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION test_die_at_commit() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
            )
            cursor.execute(
                "CREATE CONSTRAINT TRIGGER test_die_at_commit "
                "AFTER UPDATE ON platform_idempotencyrecord DEFERRABLE INITIALLY DEFERRED "
                f"FOR EACH ROW WHEN (NEW.key = '{key}' AND NEW.state = 'done') "
                "EXECUTE FUNCTION test_die_at_commit()"
            )

    yield arm
    connection.close()  # it may be the terminated one
    _disarm()


@pytest.mark.django_db(transaction=True)
def test_connection_terminated_at_the_commit_of_the_answer_frees_the_key(
    admin, terminate_at_commit_of
):
    key = f"doomed-{uuid.uuid4()}"
    terminate_at_commit_of(key)
    first = admin.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 503, first.content
    assert first.json()["retriable"] is True
    _disarm()
    # Nothing of the first attempt was kept; the retry runs (not 409 "in flight").
    assert not AuditLogEntry.objects.filter(action="widget_created").exists()
    again = admin.post(URL, {"name": "w", "size": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert again.status_code == 201, again.content
    assert not again.has_header("Idempotent-Replayed")
    assert AuditLogEntry.objects.filter(action="widget_created").count() == 1
    assert IdempotencyRecord.objects.get(key=key).state == "done"


def _claim(key: str) -> idempotency.Claim | HttpResponse:
    return idempotency.begin(tenant_id=TENANT, key=key, print_="p")


def _in_thread(fn):  # type: ignore[no-untyped-def]
    """Run fn on its own thread (so on its own database connection); return its outcome."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _backend_gone(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_claim_of_a_live_request_is_in_flight_and_of_a_dead_one_is_taken_over():
    key = f"owner-{uuid.uuid4()}"
    owned = threading.Event()
    done = threading.Event()
    state: dict[str, object] = {}

    def owner() -> None:
        state["claim"] = _claim(key)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            state["pid"] = cursor.fetchone()[0]
        owned.set()
        done.wait(10)  # the handler is running

    thread, _ = _in_thread(owner)
    assert owned.wait(10)
    assert isinstance(state["claim"], idempotency.Claim)
    # A true concurrent duplicate: 409, retriable.
    with pytest.raises(Conflict) as conflict:
        _claim(key)
    assert conflict.value.retriable is True

    # The owner's process dies (its backend is terminated): the retry runs at once.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [state["pid"]])
    for _ in range(200):
        if _backend_gone(state["pid"]):
            break
        time.sleep(0.01)
    retry = _claim(key)
    assert isinstance(retry, idempotency.Claim)
    assert retry.record_id == state["claim"].record_id
    # ... and it is the owner now: a third request is told "in flight".
    with pytest.raises(Conflict):
        _in_thread_result(lambda: _claim(key))
    idempotency.finish(retry, HttpResponse(b"{}", status=201, content_type="application/json"))
    replay = _claim(key)
    assert isinstance(replay, HttpResponse) and replay["Idempotent-Replayed"] == "true"
    done.set()
    thread.join()


def _in_thread_result(fn):  # type: ignore[no-untyped-def]
    thread, outcome = _in_thread(fn)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("commits", [True, False], ids=["commits", "rolls-back"])
def test_duplicate_between_the_answer_and_its_commit_waits_for_the_outcome(commits):
    """The answer is stored in the handler's transaction; a duplicate that arrives before
    that commits waits for it: a replay if it commits, the retry runs if it rolls back."""
    key = f"window-{uuid.uuid4()}"
    claim = _claim(key)
    assert isinstance(claim, idempotency.Claim)
    duplicate: tuple[threading.Thread, dict[str, object]] | None = None

    class RolledBack(Exception):
        pass

    expected = contextlib.nullcontext() if commits else pytest.raises(RolledBack)
    with expected, transaction.atomic():
        AuditLogEntry.objects.create(
            at=clock.now(), action="widget_created", principal="p", tenant_id=TENANT
        )
        idempotency.finish(
            claim, HttpResponse(b'{"ok": 1}', status=201, content_type="application/json")
        )
        duplicate = _in_thread(lambda: _claim(key))
        for _ in range(300):
            if _waiting_on_a_lock() or not duplicate[0].is_alive():
                break
            time.sleep(0.01)
        if not commits:
            raise RolledBack
    assert duplicate is not None
    thread, outcome = duplicate
    thread.join()
    assert "error" not in outcome, outcome
    if commits:
        assert isinstance(outcome["value"], HttpResponse)
        assert outcome["value"]["Idempotent-Replayed"] == "true"
        assert AuditLogEntry.objects.count() == 1
    else:
        assert isinstance(outcome["value"], idempotency.Claim)
        assert not AuditLogEntry.objects.exists()
        assert IdempotencyRecord.objects.get(key=key).state == "in_flight"


@pytest.mark.django_db(transaction=True)
def test_owner_whose_claim_was_taken_over_keeps_nothing():
    """A live request older than STALE_AFTER (here its lock is still held) may be taken over;
    it then neither stores its answer nor commits its effect, nor frees the new claim."""
    key = f"slow-{uuid.uuid4()}"
    claim = _claim(key)
    assert isinstance(claim, idempotency.Claim)
    later = clock.now() + idempotency.STALE_AFTER + timedelta(seconds=1)
    with clock.override(lambda: later):
        retry = _in_thread_result(lambda: _claim(key))
    assert isinstance(retry, idempotency.Claim) and retry.record_id == claim.record_id

    with pytest.raises(Conflict), transaction.atomic():
        AuditLogEntry.objects.create(
            at=clock.now(), action="widget_created", principal="p", tenant_id=TENANT
        )
        idempotency.finish(claim, HttpResponse(b"{}", status=201, content_type="application/json"))
    assert not AuditLogEntry.objects.exists()
    idempotency.finish(claim, HttpResponse(b"{}", status=409, content_type="application/json"))
    row = IdempotencyRecord.objects.get(key=key)
    assert (row.state, row.created_at) == ("in_flight", retry.token)
