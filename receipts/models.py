"""Signed receipts (SPEC 6) and the keys that sign them.

A receipt row keeps the exact canonical text that was signed (`canonical`), so a read returns
the signed object byte for byte; the other columns are copies of fields inside it, for filters.
Rows are append-only: no code path updates or deletes them, and on PostgreSQL a trigger
refuses UPDATE and DELETE outright (migration 0002).
"""

import uuid

from django.db import models


class SigningKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"

    class Source(models.TextChoices):
        GENERATED = "generated"
        ENVIRONMENT = "environment"

    #: RFC 7638 thumbprint of the public JWK: the same key always has the same kid.
    kid = models.CharField(max_length=64, primary_key=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, base64url")
    #: AES-GCM(HKDF(SECRET_KEY)) of the raw private key; empty for a key from the environment.
    private_key_sealed = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.GENERATED)
    created_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="active"),
                name="receipts_one_active_signing_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.status})"


class Receipt(models.Model):
    receipt_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=128)
    gate_id = models.CharField(max_length=32)
    decision_status = models.CharField(max_length=16)
    timestamp_utc = models.DateTimeField()
    kid = models.CharField(max_length=64)
    #: RFC 8785 text of the receipt without `signature`: exactly the signed bytes (UTF-8).
    canonical = models.TextField()
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-timestamp_utc", "-receipt_id"]
        indexes = [
            models.Index(
                fields=["tenant_id", "-timestamp_utc", "-receipt_id"], name="receipt_tenant_time"
            ),
            models.Index(
                fields=["tenant_id", "gate_id", "-timestamp_utc"], name="receipt_tenant_gate"
            ),
            models.Index(
                fields=["tenant_id", "decision_status", "-timestamp_utc"],
                name="receipt_tenant_decision",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gate_id} {self.decision_status} {self.receipt_id}"

    def as_dict(self) -> dict:
        """The signed object: the canonical fields plus `signature`, nothing added."""
        import json

        body = json.loads(self.canonical)
        body["signature"] = self.signature
        return body
