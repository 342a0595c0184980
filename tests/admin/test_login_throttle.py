"""Sign-in is throttled against password guessing on the admin and on the approval pages."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone

from budgeting_site.platform.models import AuditLogEntry
from tests.admin.conftest import PASSWORD

ADMIN_LOGIN = "/admin/login/"
PAGES_LOGIN = "/approvals/login/"


def _login(client: Client, url: str, username: str, password: str, addr: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=addr)


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 5
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 900


@pytest.mark.parametrize("url", [ADMIN_LOGIN, PAGES_LOGIN])
def test_after_five_failures_even_the_right_password_is_refused_with_429(make_user, url):
    make_user("alice", {"t-acme": ["financial_controller"]})
    client = Client()
    for _ in range(5):
        response = _login(client, url, "alice", "wrong")
        assert response.status_code == 200
        assert not _signed_in(client)

    response = _login(client, url, "alice", PASSWORD)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 900
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not _signed_in(client)
    assert AuditLogEntry.objects.filter(action="login_failed").count() == 5
    assert AuditLogEntry.objects.filter(action="login_throttled").count() == 1


def test_five_failures_then_the_right_password_still_signs_in(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    client = Client()
    for _ in range(4):
        _login(client, PAGES_LOGIN, "alice", "wrong")

    response = _login(client, PAGES_LOGIN, "alice", PASSWORD)

    assert response.status_code == 302
    assert _signed_in(client)
    assert AuditLogEntry.objects.filter(action="login_succeeded").count() == 1


def test_username_is_throttled_from_any_address_and_case(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    for i in range(5):
        _login(Client(), ADMIN_LOGIN, "alice", "wrong", addr=f"10.0.1.{i}")

    client = Client()
    response = _login(client, ADMIN_LOGIN, " ALICE ", PASSWORD, addr="10.9.9.9")

    assert response.status_code == 429
    assert not _signed_in(client)


def test_address_is_throttled_across_usernames(make_user):
    make_user("bob", {"t-acme": ["auditor"]})
    for i in range(5):
        _login(Client(), ADMIN_LOGIN, f"guess{i}", "wrong", addr="10.0.0.7")

    blocked = Client()
    assert _login(blocked, ADMIN_LOGIN, "bob", PASSWORD, addr="10.0.0.7").status_code == 429
    assert not _signed_in(blocked)
    other = Client()
    assert _login(other, ADMIN_LOGIN, "bob", PASSWORD, addr="10.0.0.8").status_code == 302
    assert _signed_in(other)


def test_the_lock_lifts_when_the_failures_leave_the_window(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            _login(Client(), PAGES_LOGIN, "alice", "wrong")
        assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD).status_code == 429
    with time_machine.travel(start + timedelta(seconds=899), tick=False):
        assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD).status_code == 429
    with time_machine.travel(start + timedelta(seconds=901), tick=False):
        client = Client()
        assert _login(client, PAGES_LOGIN, "alice", PASSWORD).status_code == 302
        assert _signed_in(client)


def test_refused_attempts_do_not_extend_the_lock(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            _login(Client(), PAGES_LOGIN, "alice", "wrong")
    with time_machine.travel(start + timedelta(seconds=600), tick=False):
        response = _login(Client(), PAGES_LOGIN, "alice", "wrong")
        assert response.status_code == 429
        assert int(response["Retry-After"]) == 300
    with time_machine.travel(start + timedelta(seconds=901), tick=False):
        assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD).status_code == 302


def test_a_success_restarts_the_username_count_but_not_the_address_count(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    for _ in range(4):
        _login(Client(), PAGES_LOGIN, "alice", "wrong", addr="10.0.0.1")
    assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD, addr="10.0.0.2").status_code == 302
    for _ in range(4):
        _login(Client(), PAGES_LOGIN, "alice", "wrong", addr="10.0.0.2")

    # The username count restarted at the success: 4 < 5, so alice may still sign in...
    assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD, addr="10.0.0.3").status_code == 302
    # ...but address 10.0.0.1 keeps its 4 failures: one more and it is locked.
    _login(Client(), PAGES_LOGIN, "mallory", "wrong", addr="10.0.0.1")
    assert _login(Client(), PAGES_LOGIN, "alice", PASSWORD, addr="10.0.0.1").status_code == 429


def test_a_missing_password_is_not_an_attempt(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    response = Client().post(PAGES_LOGIN, {"username": "alice", "password": ""})
    assert response.status_code == 200
    assert AuditLogEntry.objects.count() == 0


def test_failed_sign_ins_are_audited_without_the_password(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    _login(Client(), ADMIN_LOGIN, "alice", "hunter2-secret", addr="192.0.2.5")

    entry = AuditLogEntry.objects.get()
    assert entry.action == "login_failed"
    assert entry.principal == "user:alice"
    assert entry.details == {"client_address": "192.0.2.5"}
    assert entry.path == ADMIN_LOGIN
    assert "hunter2" not in str(entry.details) + entry.path + entry.principal


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_never_get_more_than_the_limit_of_password_checks(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    threads_count = 24
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        try:
            client = Client()
            barrier.wait(timeout=10)
            response = _login(client, ADMIN_LOGIN, "alice", f"wrong-{i}", addr=f"10.1.0.{i}")
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(statuses) == threads_count
    checked = AuditLogEntry.objects.filter(action="login_failed").count()
    assert 1 <= checked <= 5
    assert statuses.count(200) == checked
    assert statuses.count(429) == threads_count - checked


def test_admin_keeps_its_staff_account_message(make_user):
    make_user("alice", {"t-acme": ["financial_controller"]})
    response = _login(Client(), ADMIN_LOGIN, "alice", "wrong")
    assert "for a staff account" in response.content.decode()


def test_a_valid_non_staff_user_is_a_failed_admin_sign_in(make_user):
    make_user("manager", {"t-acme": ["financial_controller"]}, staff=False)
    client = Client()
    response = _login(client, ADMIN_LOGIN, "manager", PASSWORD)
    assert response.status_code == 200
    assert not _signed_in(client)
    assert AuditLogEntry.objects.filter(action="login_failed").count() == 1
