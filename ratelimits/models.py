"""Rate-limit policies, their emergency grants, and the database store's state (SPEC 3)."""

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q


class ScopeType(models.TextChoices):
    TENANT = "tenant"
    PROJECT = "project"
    USER = "user"
    FEATURE = "feature"


class AlgorithmChoice(models.TextChoices):
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW_LOG = "sliding_window_log"


class Mode(models.TextChoices):
    ENFORCE = "enforce"
    SHADOW = "shadow"


class FailModeChoice(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"


class RateLimitPolicy(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    policy_name = models.CharField(max_length=255, blank=True, default="")
    scope_type = models.CharField(max_length=16, choices=ScopeType.choices)
    #: The tenant id for a tenant-level policy.
    scope_id = models.CharField(max_length=128)
    resource_type = models.CharField(max_length=128)
    limit_value = models.PositiveBigIntegerField()
    time_window_seconds = models.PositiveIntegerField()
    algorithm = models.CharField(
        max_length=32, choices=AlgorithmChoice.choices, default=AlgorithmChoice.TOKEN_BUCKET
    )
    burst_capacity = models.PositiveBigIntegerField(default=0)
    overrides = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.ENFORCE)
    fail_mode = models.CharField(
        max_length=16, choices=FailModeChoice.choices, default=FailModeChoice.OPEN
    )
    enabled = models.BooleanField(default=True)
    #: Set by the usage-pattern job (SPEC 3.3), within [0.5, 2.0].
    usage_factor = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("1"))
    usage_factor_updated_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "scope_type", "scope_id", "resource_type"],
                name="ratelimits_one_policy_per_scope_resource",
            ),
            models.CheckConstraint(condition=Q(limit_value__gte=1), name="ratelimits_limit_ge_1"),
            models.CheckConstraint(
                condition=Q(time_window_seconds__gte=1), name="ratelimits_window_ge_1"
            ),
            models.CheckConstraint(
                condition=Q(usage_factor__gte=Decimal("0.5")) & Q(usage_factor__lte=Decimal("2")),
                name="ratelimits_usage_factor_range",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant_id", "resource_type"], name="ratelimits_tenant_resource"),
        ]
        verbose_name_plural = "rate limit policies"

    def __str__(self) -> str:
        return self.policy_name or f"{self.resource_type} @ {self.scope_type}:{self.scope_id}"

    @property
    def version_id(self) -> str:
        return f"{self.pk}@{self.version}"


class GrantStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval"
    ACTIVE = "active"
    #: Its approval request was rejected, or expired before anyone decided: it never applies.
    REJECTED = "rejected"
    EXPIRED = "expired"


class EmergencyGrant(models.Model):
    """Extra requests for a policy for a while (SPEC 3.3). Ends by itself at `ends_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    policy = models.ForeignKey(RateLimitPolicy, on_delete=models.CASCADE, related_name="grants")
    extra_requests = models.PositiveBigIntegerField()
    duration_seconds = models.PositiveIntegerField()
    reason = models.TextField(blank=True, default="")
    status = models.CharField(max_length=24, choices=GrantStatus.choices)
    approval_id = models.UUIDField(null=True, blank=True)
    requested_by = models.CharField(max_length=255)
    created_at = models.DateTimeField()
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_seconds__gte=1) & Q(duration_seconds__lte=86_400),
                name="ratelimits_grant_duration_range",
            ),
            models.CheckConstraint(
                condition=Q(extra_requests__gte=1), name="ratelimits_grant_extra_ge_1"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant_id", "status", "ends_at"], name="ratelimits_grant_active"),
        ]

    def __str__(self) -> str:
        return f"+{self.extra_requests} for {self.policy_id} ({self.status})"


class RateLimitUsage(models.Model):
    """The database store's state (the embedded default): one row per counter.

    `key` is the engine's storage key inside the tenant. Fixed windows use `window_start_ms`
    and `count`; buckets `level`, `unit` and `updated_ms`; sliding logs `entries` (sorted ms).
    """

    tenant_id = models.CharField(max_length=128)
    key = models.CharField(max_length=512)
    window_start_ms = models.BigIntegerField(null=True, blank=True)
    count = models.BigIntegerField(default=0)
    level = models.BigIntegerField(default=0)
    unit = models.BigIntegerField(default=0)
    updated_ms = models.BigIntegerField(default=0)
    entries = models.JSONField(default=list, blank=True)
    expires_at_ms = models.BigIntegerField(default=0)

    class Meta:
        db_table = "rate_limit_usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "key"], name="rate_limit_usage_key"),
            models.CheckConstraint(condition=Q(count__gte=0), name="rate_limit_usage_count_ge_0"),
            models.CheckConstraint(condition=Q(level__gte=0), name="rate_limit_usage_level_ge_0"),
        ]
        indexes = [models.Index(fields=["expires_at_ms"], name="rate_limit_usage_expiry")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.key}"


class PolicyEpoch(models.Model):
    """The database store's policy epoch per tenant (Redis keeps its own)."""

    tenant_id = models.CharField(max_length=128, primary_key=True)
    epoch = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.epoch}"


class ViolationMark(models.Model):
    """At most one `rate_limit_violated` event per policy, key and minute, across processes."""

    tenant_id = models.CharField(max_length=128)
    policy_id = models.UUIDField()
    resource_key = models.CharField(max_length=255)
    minute = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "policy_id", "resource_key", "minute"],
                name="ratelimits_one_violation_event_per_minute",
            )
        ]
        indexes = [models.Index(fields=["minute"], name="ratelimits_violation_minute")]

    def __str__(self) -> str:
        return f"{self.policy_id}:{self.resource_key}@{self.minute:%Y-%m-%dT%H:%M}"
