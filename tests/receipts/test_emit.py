import base64
import json
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import IntegrityError, transaction

from receipts import keys
from receipts import services as receipt_services
from receipts.models import Receipt, SigningKey
from receipts.services import (
    ReceiptDraft,
    emit_receipt,
    emit_receipts_bulk,
    system_actor,
    verify_receipt_object,
    verify_stored,
)


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _drafts(count):
    return [
        ReceiptDraft(
            tenant_id="t-acme",
            gate_id="rate-limit-check",
            inputs={"i": i},
            result={"allowed": True},
            decision_status="pass",
            receipt_id=uuid4(),
        )
        for i in range(count)
    ]


def _emit(**overrides):
    fields = {
        "tenant_id": "t-acme",
        "gate_id": "budget-check",
        "inputs": {"estimated_cost": Decimal("0.3800000000"), "budget_id": UUID(int=7)},
        "result": {"allowed": True, "remaining_budget": Decimal("99.62")},
        "decision_status": "pass",
        "rationale": "within budget",
        "badges": ["hard_stop"],
        "policy_version_ids": [f"{UUID(int=7)}@3"],
        "actor": system_actor("tests"),
    }
    fields.update(overrides)
    return emit_receipt(**fields)


@pytest.mark.django_db
def test_emitted_receipt_is_canonical_signed_and_normalised():
    receipt = _emit()
    body = receipt.as_dict()
    assert body["inputs"] == {
        "budget_id": "00000000-0000-0000-0000-000000000007",
        "estimated_cost": "0.38",
    }
    assert body["result"] == {"allowed": True, "remaining_budget": "99.62"}
    assert body["decision"] == {
        "status": "pass",
        "rationale": "within budget",
        "badges": ["hard_stop"],
    }
    assert body["policy_version_ids"] == ["00000000-0000-0000-0000-000000000007@3"]
    assert body["actor"]["principal"] == "system:tests"
    assert body["timestamp_utc"].endswith("Z")
    assert set(body) == {
        "receipt_id",
        "tenant_id",
        "gate_id",
        "policy_version_ids",
        "snapshot_hash",
        "timestamp_utc",
        "timestamp_monotonic_ms",
        "inputs",
        "decision",
        "result",
        "actor",
        "degraded",
        "kid",
        "signature",
    }
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    assert rfc8785.dumps(unsigned).decode() == receipt.canonical
    snapshot = rfc8785.dumps(
        {"inputs": body["inputs"], "decision": body["decision"], "result": body["result"]}
    )
    import hashlib

    assert body["snapshot_hash"] == "sha256:" + hashlib.sha256(snapshot).hexdigest()
    key = SigningKey.objects.get(kid=body["kid"])
    Ed25519PublicKey.from_public_bytes(_b64url_decode(key.public_key)).verify(
        _b64url_decode(body["signature"]), rfc8785.dumps(unsigned)
    )
    assert verify_receipt_object(json.loads(json.dumps(body))).valid


@pytest.mark.django_db
def test_bulk_receipts_share_one_key_and_monotonic_time_never_decreases():
    drafts = _drafts(5)
    made = emit_receipts_bulk(drafts)
    assert Receipt.objects.count() == 5
    assert len({r.kid for r in made}) == 1
    monos = [json.loads(r.canonical)["timestamp_monotonic_ms"] for r in made]
    assert monos == sorted(monos)
    again = emit_receipts_bulk(drafts, skip_existing=True)
    assert again == [] and Receipt.objects.count() == 5


@pytest.mark.django_db
def test_receipt_rolls_back_with_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        _emit()
        raise RuntimeError("boom")
    assert Receipt.objects.count() == 0


@pytest.mark.django_db
def test_unknown_gate_or_status_is_a_programming_error():
    with pytest.raises(ValueError):
        _emit(gate_id="nope")
    with pytest.raises(ValueError):
        _emit(decision_status="allowed")
    assert Receipt.objects.count() == 0


@pytest.mark.django_db
def test_bulk_insert_leaves_a_receipt_another_writer_stored_after_the_look():
    """Two drains at once: the other one commits an id between this one's look and insert."""
    drafts = _drafts(3)
    (first,) = emit_receipts_bulk(drafts[:1])
    rows = [receipt_services._build(d, keys.active_signer()) for d in drafts]
    receipt_services._insert(rows, batch_size=500, ignore_conflicts=True)
    assert Receipt.objects.count() == 3
    assert Receipt.objects.get(pk=first.receipt_id).canonical == first.canonical
    for row in rows[1:]:
        stored = Receipt.objects.get(pk=row.receipt_id)
        assert (stored.canonical, stored.signature, stored.timestamp_utc) == (
            row.canonical,
            row.signature,
            row.timestamp_utc,
        )
        assert verify_stored(stored).valid
    with pytest.raises(IntegrityError), transaction.atomic():
        receipt_services._insert(rows[:1], batch_size=500, ignore_conflicts=False)
    assert Receipt.objects.count() == 3
