"""Users with tenant memberships, for the admin and the approval pages."""

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model

from budgeting_site.platform.services import set_membership
from tests.admin.dashboard_fakes import calls, fake_providers  # noqa: F401 - fixtures

PASSWORD = "a-long-test-password-42"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's million rounds cost ~0.3 s per sign-in; what is tested here is not the hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(
        username: str,
        memberships: dict[str, list[str]] | None = None,
        *,
        staff: bool = True,
        superuser: bool = False,
    ):
        user = get_user_model().objects.create_user(
            username=username, password=PASSWORD, is_staff=staff, is_superuser=superuser
        )
        for tenant_id, roles in (memberships or {}).items():
            set_membership(user=user, tenant_id=tenant_id, roles=roles)
        return user

    return make
