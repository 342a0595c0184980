import uuid

from django.conf import settings
from django.db import models

ROLES = (
    "tenant_admin",
    "financial_controller",
    "auditor",
    "tenant_user",
    "system_architect",
    "service",
)
ROLE_CHOICES = [(r, r) for r in ROLES]


class ApiKey(models.Model):
    """An operator-issued key for one tenant and a set of roles.

    Only the SHA-256 of the secret is stored: a key is checked on every request, so a slow
    password hash would cost more than it protects (the secret has 256 bits of entropy).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=255)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    roles = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=255, blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.tenant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` per tenant; the unique constraint decides who runs first."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        DONE = "done"

    tenant_id = models.CharField(max_length=128)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "key"], name="uniq_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.key} ({self.state})"


class AuditLogEntry(models.Model):
    """The platform's audit log: refused cross-tenant access and security-relevant actions."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64)
    principal = models.CharField(max_length=255)
    tenant_id = models.CharField(max_length=128)
    target_tenant_id = models.CharField(max_length=128, blank=True, default="")
    path = models.CharField(max_length=512, blank=True, default="")
    method = models.CharField(max_length=8, blank=True, default="")
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    details = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "audit log entries"
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} by {self.principal}"


class TenantMembership(models.Model):
    """Which tenants a Django user (admin staff, approval-page manager) acts for, with roles."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant_id = models.CharField(max_length=128)
    roles = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant_id"], name="uniq_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id}: {', '.join(self.roles)}"
