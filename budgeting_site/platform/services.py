"""The platform's own writes: API keys and tenant memberships."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from budgeting_site.platform import clock
from budgeting_site.platform.auth import generate_api_key
from budgeting_site.platform.errors import ValidationFailed
from budgeting_site.platform.models import ROLES, ApiKey, AuditLogEntry, TenantMembership


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValidationFailed(f"Unknown roles: {', '.join(unknown)}")
    if not roles:
        raise ValidationFailed("At least one role is required")
    return sorted(set(roles))


def create_api_key(
    *, tenant_id: str, name: str, roles: list[str], created_by: str
) -> tuple[ApiKey, str]:
    """Returns the key and its plaintext, which is shown once and never stored."""
    plaintext, prefix, secret_hash = generate_api_key()
    with transaction.atomic():
        key = ApiKey.objects.create(
            tenant_id=tenant_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            roles=_check_roles(roles),
            created_by=created_by,
        )
        AuditLogEntry.objects.create(
            at=clock.now(),
            action="api_key_created",
            principal=created_by,
            tenant_id=tenant_id,
            details={"api_key_id": str(key.id), "roles": key.roles},
        )
    return key, plaintext


def revoke_api_key(*, key_id: str, revoked_by: str) -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key_id)
        if key.revoked_at is None:
            key.revoked_at = clock.now()
            key.save(update_fields=["revoked_at"])
            AuditLogEntry.objects.create(
                at=key.revoked_at,
                action="api_key_revoked",
                principal=revoked_by,
                tenant_id=key.tenant_id,
                details={"api_key_id": str(key.id)},
            )
    return key


def set_membership(*, user: AbstractBaseUser, tenant_id: str, roles: list[str]) -> TenantMembership:
    membership, _ = TenantMembership.objects.update_or_create(
        user=user, tenant_id=tenant_id, defaults={"roles": _check_roles(roles)}
    )
    return membership
