"""Staff see and act only within their tenants and roles; superusers see all (SPEC 1.1, 8).

Exercised on the platform's own admins (API keys, audit log), which use TenantScopedAdmin
like the apps' admins do.
"""

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

from budgeting_site.platform.admin_scoping import (
    ROLE_TABLE,
    TenantListFilter,
    TenantScopedAdmin,
    approver_roles,
    has_role,
    page_principal,
    tenants_with,
)
from budgeting_site.platform.models import ApiKey, AuditLogEntry
from budgeting_site.platform.services import create_api_key
from tests.admin.conftest import PASSWORD

KEYS = "/admin/platform/apikey/"


def _client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def keys(db):
    acme, _ = create_api_key(tenant_id="t-acme", name="acme-svc", roles=["service"], created_by="x")
    globex, _ = create_api_key(
        tenant_id="t-globex", name="globex-svc", roles=["service"], created_by="x"
    )
    return acme, globex


def test_tenant_admin_lists_only_its_tenants_keys(make_user, keys):
    user = make_user("ta", {"t-acme": ["tenant_admin"]})
    response = _client(user).get(KEYS)
    assert response.status_code == 200
    listed = list(response.context["cl"].result_list)
    assert [k.name for k in listed] == ["acme-svc"]
    # the tenant filter offers the user's tenants only, never another tenant's id
    assert "t-globex" not in response.content.decode()


def test_another_tenants_object_does_not_exist_for_staff(make_user, keys):
    _, globex = keys
    user = make_user("ta", {"t-acme": ["tenant_admin"]})
    response = _client(user).get(f"{KEYS}{globex.pk}/change/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_superuser_sees_every_tenant(make_user, keys):
    user = make_user("root", superuser=True)
    response = _client(user).get(KEYS)
    assert sorted(k.name for k in response.context["cl"].result_list) == [
        "acme-svc",
        "globex-svc",
    ]


def test_wrong_role_is_refused_and_the_model_is_hidden(make_user, keys):
    user = make_user("aud", {"t-acme": ["auditor"]})
    client = _client(user)
    assert client.get(KEYS).status_code == 403
    index = client.get("/admin/")
    assert index.status_code == 200
    assert KEYS not in index.content.decode()
    # ...but the audit log, which auditors read, is there
    assert "/admin/platform/auditlogentry/" in index.content.decode()


def test_staff_without_membership_sees_nothing(make_user, keys):
    user = make_user("nobody")
    client = _client(user)
    assert client.get(KEYS).status_code == 403
    assert client.get("/admin/platform/auditlogentry/").status_code == 403
    assert client.get("/admin/").context["app_list"] == []


def test_add_offers_only_writable_tenants_and_refuses_another(make_user, keys):
    user = make_user("ta", {"t-acme": ["tenant_admin"], "t-initech": ["auditor"]})
    client = _client(user)
    form = client.get(f"{KEYS}add/").context["adminform"].form
    assert list(form.fields["tenant_id"].choices) == [("t-acme", "t-acme")]

    before = ApiKey.objects.count()
    response = client.post(
        f"{KEYS}add/", {"tenant_id": "t-globex", "name": "sneaky", "roles": ["service"]}
    )
    assert response.status_code == 200  # the form again, with an error
    assert "tenant_id" in response.context["adminform"].form.errors
    assert ApiKey.objects.count() == before


def test_action_on_another_tenants_rows_changes_nothing(make_user, keys):
    acme, globex = keys
    user = make_user("ta", {"t-acme": ["tenant_admin"]})
    response = _client(user).post(
        KEYS,
        {"action": "revoke", "_selected_action": [str(acme.pk), str(globex.pk)]},
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    globex.refresh_from_db()
    assert acme.revoked_at is not None
    assert globex.revoked_at is None


def test_audit_log_is_read_only_and_scoped(make_user, db):
    from django.utils import timezone

    AuditLogEntry.objects.create(at=timezone.now(), action="x", principal="p", tenant_id="t-acme")
    AuditLogEntry.objects.create(at=timezone.now(), action="y", principal="p", tenant_id="t-globex")
    user = make_user("aud", {"t-acme": ["auditor"]})
    client = _client(user)
    response = client.get("/admin/platform/auditlogentry/")
    assert [e.action for e in response.context["cl"].result_list] == ["x"]
    entry = AuditLogEntry.objects.get(action="x")
    page = client.get(f"/admin/platform/auditlogentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.post(f"/admin/platform/auditlogentry/{entry.pk}/delete/").status_code == 403


# --- the helpers apps use --------------------------------------------------------------------


def _request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_role_helpers_follow_memberships(make_user, settings):
    user = make_user(
        "mixed", {"t-acme": ["financial_controller"], "t-globex": ["tenant_admin", "auditor"]}
    )
    request = _request(user)
    assert tenants_with(request, ROLE_TABLE["budgets"].write) == ["t-acme", "t-globex"]
    assert tenants_with(request, ROLE_TABLE["ratelimits"].write) == ["t-globex"]
    assert has_role(request, ["auditor"], "t-globex")
    assert not has_role(request, ["auditor"], "t-acme")
    settings.APPROVALS_ALLOW_TENANT_ADMIN = False
    assert tenants_with(request, approver_roles()) == ["t-acme"]
    settings.APPROVALS_ALLOW_TENANT_ADMIN = True
    assert tenants_with(request, approver_roles()) == ["t-acme", "t-globex"]


def test_page_principal_is_user_colon_username_with_that_tenants_roles(make_user):
    user = make_user("finance", {"t-acme": ["financial_controller", "auditor"]})
    principal = page_principal(_request(user), "t-acme")
    assert principal.principal == "user:finance"
    assert principal.tenant_id == "t-acme"
    assert principal.roles == frozenset({"financial_controller", "auditor"})
    assert page_principal(_request(user), "t-globex").roles == frozenset()


def test_superuser_holds_every_role_in_the_admin_but_not_on_the_pages(make_user):
    user = make_user("root", superuser=True)
    request = _request(user)
    assert has_role(request, ["financial_controller"], "anything")
    assert "financial_controller" in page_principal(request, "t-acme").roles
    assert page_principal(request, "t-acme", superuser_holds_all=False).roles == frozenset()


def test_memberships_are_read_once_per_request(make_user, django_assert_num_queries):
    user = make_user("ta", {"t-acme": ["tenant_admin"]})
    request = _request(user)
    with django_assert_num_queries(1):
        for _ in range(10):
            has_role(request, ["tenant_admin"], "t-acme")
            tenants_with(request, ["auditor"])


def test_mixin_permissions_per_object_tenant(make_user, keys):
    acme, globex = keys

    class Scoped(TenantScopedAdmin, admin.ModelAdmin):
        view_roles = frozenset({"auditor"})
        change_roles = frozenset({"tenant_admin"})

    model_admin = Scoped(ApiKey, admin.site)
    model_admin.list_filter = ["prefix", "tenant_id"]
    user = make_user("u", {"t-acme": ["tenant_admin"], "t-globex": ["auditor"]})
    request = _request(user)
    assert model_admin.has_change_permission(request, acme)
    assert not model_admin.has_change_permission(request, globex)
    assert model_admin.has_view_permission(request, globex)
    assert not model_admin.has_delete_permission(request, acme)  # nobody by default
    assert sorted(model_admin.get_queryset(request).values_list("name", flat=True)) == [
        "acme-svc",
        "globex-svc",
    ]
    assert list(
        model_admin.scope(request, ApiKey.objects.all(), ["tenant_admin"]).values_list(
            "name", flat=True
        )
    ) == ["acme-svc"]
    assert model_admin.get_list_filter(request) == ["prefix", TenantListFilter]
