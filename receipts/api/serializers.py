"""Output shapes of the receipts API, for the OpenAPI schema. The views answer with the stored
signed objects and dicts; these describe exactly them (the tests validate real answers against
the generated schema)."""

from rest_framework import serializers

from receipts.services import DECISION_STATUSES, GATE_IDS

VERDICT_REASONS = [
    "ok",
    "malformed",
    "missing_signature",
    "unknown_kid",
    "bad_signature",
    "snapshot_hash_mismatch",
]


class ReceiptDecisionOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=sorted(DECISION_STATUSES))
    rationale = serializers.CharField(allow_blank=True)
    badges = serializers.ListField(child=serializers.CharField())


class ReceiptActorOut(serializers.Serializer):
    principal = serializers.CharField(allow_null=True)
    credential_id = serializers.CharField(allow_null=True, allow_blank=True)
    instance = serializers.CharField(allow_null=True, allow_blank=True)


class ReceiptOut(serializers.Serializer):
    """Exactly the signed object: every field but `signature` is covered by the signature
    (Ed25519 over the RFC 8785 bytes of the object without `signature`, base64url)."""

    receipt_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    gate_id = serializers.ChoiceField(choices=sorted(GATE_IDS))
    policy_version_ids = serializers.ListField(
        child=serializers.CharField(), help_text='"<id>@<version>" of each budget or policy'
    )
    snapshot_hash = serializers.RegexField(
        r"^sha256:[0-9a-f]{64}$", help_text="over the canonical form of {inputs, decision, result}"
    )
    timestamp_utc = serializers.DateTimeField()
    timestamp_monotonic_ms = serializers.IntegerField()
    inputs = serializers.DictField(help_text="ids and aggregates; amounts as decimal strings")
    decision = ReceiptDecisionOut()
    result = serializers.DictField()
    actor = ReceiptActorOut()
    degraded = serializers.BooleanField()
    kid = serializers.CharField()
    signature = serializers.CharField(help_text="Ed25519, base64url")


class ReceiptPaginationOut(serializers.Serializer):
    page = serializers.IntegerField(allow_null=True, help_text="null in cursor mode")
    page_size = serializers.IntegerField()
    total_count = serializers.IntegerField(allow_null=True, help_text="null in cursor mode")
    total_pages = serializers.IntegerField(allow_null=True, help_text="null in cursor mode")


class ReceiptListOut(serializers.Serializer):
    receipts = ReceiptOut(many=True)
    pagination = ReceiptPaginationOut()
    next_cursor = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="cursor mode only: the `cursor` of the next page, null on the last one",
    )


class SigningKeyJwkOut(serializers.Serializer):
    """An RFC 8037 JWK, with the key's status and validity."""

    kty = serializers.ChoiceField(choices=["OKP"])
    crv = serializers.ChoiceField(choices=["Ed25519"])
    x = serializers.CharField(help_text="the raw public key, base64url")
    kid = serializers.CharField()
    alg = serializers.ChoiceField(choices=["EdDSA"])
    use = serializers.ChoiceField(choices=["sig"])
    status = serializers.ChoiceField(choices=["active", "retired"])
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True, help_text="null while active")


class SigningKeysOut(serializers.Serializer):
    keys = SigningKeyJwkOut(many=True)


class ReceiptVerdictOut(serializers.Serializer):
    valid = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=VERDICT_REASONS)
