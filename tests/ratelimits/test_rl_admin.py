"""The admin: policies created and changed through the same services as the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from approvals import tasks as approval_tasks
from budgeting_site.platform.principal import Principal
from budgeting_site.platform.services import set_membership
from ratelimits import services
from ratelimits.models import RateLimitPolicy
from receipts.models import Receipt

from .conftest import NOON

PASSWORD = "a-long-test-password-42"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(username: str, memberships: dict[str, list[str]]) -> Client:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
    for tenant_id, roles in memberships.items():
        set_membership(user=user, tenant_id=tenant_id, roles=roles)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_admin_creates_and_edits_a_policy_through_the_services():
    client = _client("arch", {"t-acme": ["system_architect"]})
    form = {
        "tenant_id": "t-acme",
        "policy_name": "from the admin",
        "scope_type": "tenant",
        "scope_id": "ignored",
        "resource_type": "llm",
        "limit_value": "50",
        "time_window_seconds": "60",
        "algorithm": "token_bucket",
        "burst_capacity": "0",
        "overrides": "{}",
        "mode": "enforce",
        "fail_mode": "open",
        "enabled": "on",
        "grants-TOTAL_FORMS": "0",
        "grants-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/ratelimits/ratelimitpolicy/add/", form)
    assert response.status_code == 302, response.content[:2000]
    policy = RateLimitPolicy.objects.get()
    assert policy.scope_id == "t-acme" and policy.created_by == "user:arch"
    assert Receipt.objects.filter(gate_id="policy-admin").count() == 1
    form["limit_value"] = "70"
    response = client.post(f"/admin/ratelimits/ratelimitpolicy/{policy.pk}/change/", form)
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.limit_value == 70 and policy.version == 2
    assert Receipt.objects.filter(gate_id="policy-admin").count() == 2


def test_admin_lists_only_the_users_tenants():
    call_command("seed_demo", tenant="t-acme", verbosity=0)
    call_command("seed_demo", tenant="t-globex", verbosity=0)
    client = _client("auditor", {"t-globex": ["auditor"]})
    page = client.get("/admin/ratelimits/ratelimitpolicy/")
    assert page.status_code == 200
    assert (
        page.context["cl"].result_count
        == RateLimitPolicy.objects.filter(tenant_id="t-globex").count()
    )
    assert client.get("/admin/ratelimits/ratelimitusage/").status_code == 200
    assert client.get("/admin/ratelimits/emergencygrant/").status_code == 200


def test_admin_shows_a_grant_whose_approval_expired():
    architect = Principal(
        principal="arch-1", tenant_id="t-acme", roles=frozenset({"system_architect"})
    )
    with time_machine.travel(NOON, tick=False):
        policy = services.policy_create(
            tenant_id="t-acme",
            data={"resource_type": "llm", "limit_value": 10, "time_window_seconds": 60},
            actor=architect.actor,
        )
        services.emergency_capacity_request(
            tenant_id="t-acme",
            policy_id=policy.pk,
            extra_requests=5,
            duration_seconds=5 * 3600,
            reason="launch",
            principal=architect,
        )
    with time_machine.travel(NOON + timedelta(hours=24), tick=False):
        assert approval_tasks.expire() == 1
    client = _client("auditor", {"t-acme": ["auditor"]})
    page = client.get("/admin/ratelimits/emergencygrant/?status__exact=expired")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert b"Expired" in page.content
