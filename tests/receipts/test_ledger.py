"""Append-only ledger, the commands, keys at rest, health, admin."""

import base64
import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from budgeting_site.platform import health
from receipts import keys
from receipts.models import Receipt, SigningKey
from receipts.services import emit_receipt, rotate_signing_key, system_actor, verify_stored

pytestmark = pytest.mark.django_db


def _emit(**inputs):
    return emit_receipt(
        tenant_id="t-acme",
        gate_id="cost-tracking",
        inputs=inputs or {"n": 1},
        result={"ok": True},
        decision_status="pass",
        actor=system_actor("tests"),
    )


@pytest.mark.postgres
def test_raw_sql_update_and_delete_of_a_receipt_are_refused_on_postgresql():
    receipt = _emit()
    for sql in (
        "UPDATE receipts_receipt SET canonical = '{}' WHERE receipt_id = %s",
        "UPDATE receipts_receipt SET tenant_id = 't-evil' WHERE receipt_id = %s",
        "DELETE FROM receipts_receipt WHERE receipt_id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [receipt.pk])
    stored = Receipt.objects.get()
    assert (stored.canonical, stored.tenant_id) == (receipt.canonical, "t-acme")
    with pytest.raises(DatabaseError), transaction.atomic():
        Receipt.objects.filter(pk=receipt.pk).update(gate_id="approval")
    with pytest.raises(DatabaseError), transaction.atomic():
        Receipt.objects.filter(pk=receipt.pk).delete()
    assert Receipt.objects.get().gate_id == "cost-tracking"


def test_verify_receipts_counts_valid_and_invalid(monkeypatch):
    for i in range(5):
        _emit(n=i)
    out = io.StringIO()
    call_command("verify_receipts", "--batch-size", "2", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "verified 5/5 (100.0%)" in text
    assert "valid: 5" in text and "invalid: 0" in text

    # Tamper with one row behind the ORM's back (SQLite has no trigger; on PostgreSQL the
    # trigger is dropped for this transaction only).
    victim = Receipt.objects.order_by("pk").first()
    body = json.loads(victim.canonical)
    body["result"]["ok"] = False
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE receipts_receipt DISABLE TRIGGER receipts_append_only")
        cursor.execute(
            "UPDATE receipts_receipt SET canonical = %s WHERE receipt_id = %s",
            [
                json.dumps(body, separators=(",", ":"), sort_keys=True),
                victim.pk.hex if connection.vendor == "sqlite" else victim.pk,
            ],
        )
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE receipts_receipt ENABLE TRIGGER receipts_append_only")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 receipt"):
        call_command("verify_receipts", stdout=out, stderr=err)
    assert "valid: 4" in out.getvalue() and "invalid: 1" in out.getvalue()
    assert "bad_signature: 1" in out.getvalue()
    assert str(victim.pk) in err.getvalue()


def test_rotate_command_keeps_old_receipts_verifying_and_writes_a_receipt():
    old = _emit()
    out = io.StringIO()
    call_command("rotate_signing_key", stdout=out)
    active = SigningKey.objects.get(status="active")
    assert active.kid != old.kid and active.kid in out.getvalue()
    retired = SigningKey.objects.get(kid=old.kid)
    assert retired.status == "retired" and retired.retired_at is not None
    assert verify_stored(Receipt.objects.get(pk=old.pk)).valid
    rotation = Receipt.objects.get(tenant_id="_system")
    body = json.loads(rotation.canonical)
    assert (body["gate_id"], body["kid"], body["result"]["retired_kid"]) == (
        "policy-admin",
        active.kid,
        old.kid,
    )
    assert verify_stored(rotation).valid
    assert _emit().kid == active.kid


def test_generated_key_is_sealed_at_rest_and_survives_a_restart():
    receipt = _emit()
    row = SigningKey.objects.get(kid=receipt.kid)
    assert row.source == "generated" and row.private_key_sealed.startswith("v1:")
    raw = keys._private_cache[row.kid].private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() not in row.private_key_sealed
    assert base64.b64encode(raw).decode() not in row.private_key_sealed
    keys._private_cache.clear()  # a new process
    again = _emit()
    assert again.kid == receipt.kid
    assert verify_stored(again).valid


def test_a_changed_secret_key_cannot_unseal_and_health_says_so(settings):
    _emit()
    keys._private_cache.clear()
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    with pytest.raises(ValueError, match="unsealed"):
        keys.check_health()
    report = health.run_checks()
    assert report["dependencies"]["signing_key"]["status"] == "DOWN"


def test_signing_key_from_the_environment(settings):
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    generated = _emit()
    settings.RECEIPT_SIGNING_KEY = base64.b64encode(raw).decode()
    from_env = _emit()
    assert from_env.kid == keys.thumbprint_kid(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    )
    row = SigningKey.objects.get(kid=from_env.kid)
    assert (row.source, row.status, row.private_key_sealed) == ("environment", "active", "")
    assert SigningKey.objects.get(kid=generated.kid).status == "retired"
    assert verify_stored(Receipt.objects.get(pk=generated.pk)).valid
    assert verify_stored(from_env).valid
    # PKCS#8 DER works too and is the same key.
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    settings.RECEIPT_SIGNING_KEY = base64.b64encode(der).decode()
    assert _emit().kid == from_env.kid
    with pytest.raises(Exception, match="RECEIPT_SIGNING_KEY is set"):
        rotate_signing_key(actor=system_actor("tests"))
    settings.RECEIPT_SIGNING_KEY = "not base64 at all!!"
    with pytest.raises(Exception, match="RECEIPT_SIGNING_KEY"):
        _emit()


def test_health_registers_signing_key():
    report = health.run_checks()
    assert report["dependencies"]["signing_key"]["status"] == "UP"


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-long-enough-1")
    client.force_login(user)
    return client


def test_admin_receipts_are_read_only_and_never_deletable(superuser_client):
    receipt = _emit()
    change = superuser_client.get(f"/admin/receipts/receipt/{receipt.pk}/change/")
    assert change.status_code == 200
    assert b"valid" in change.content
    assert superuser_client.get("/admin/receipts/receipt/add/").status_code == 403
    assert superuser_client.get(f"/admin/receipts/receipt/{receipt.pk}/delete/").status_code == 403
    response = superuser_client.post(
        f"/admin/receipts/receipt/{receipt.pk}/change/", {"tenant_id": "t-evil"}
    )
    assert response.status_code == 403
    listing = superuser_client.get("/admin/receipts/receipt/")
    assert listing.status_code == 200 and b"delete_selected" not in listing.content
    assert Receipt.objects.get().canonical == receipt.canonical


def test_admin_signing_keys_hide_the_private_key_and_rotate(superuser_client):
    receipt = _emit()
    row = SigningKey.objects.get(kid=receipt.kid)
    page = superuser_client.get(f"/admin/receipts/signingkey/{row.kid}/change/")
    assert page.status_code == 200
    assert row.private_key_sealed.encode() not in page.content
    assert b"private_key_sealed" not in page.content
    response = superuser_client.post(
        "/admin/receipts/signingkey/",
        {"action": "rotate", "_selected_action": [row.kid]},
    )
    assert response.status_code == 302
    assert SigningKey.objects.get(kid=row.kid).status == "retired"
    assert SigningKey.objects.filter(status="active").exclude(kid=row.kid).count() == 1
    assert superuser_client.get(f"/admin/receipts/signingkey/{row.kid}/delete/").status_code == 403


def test_a_first_key_made_in_a_rolled_back_transaction_is_never_used_afterwards():
    keys.reset_caches()
    SigningKey.objects.all().delete()
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = _emit().kid
        raise RuntimeError("rolled back")
    assert not SigningKey.objects.filter(kid=lost).exists()
    kept = _emit()
    assert kept.kid != lost
    assert SigningKey.objects.filter(kid=kept.kid, status="active").exists()
    assert verify_stored(kept).valid
