"""Writing receipts (SPEC 6). Call these inside your service's own `transaction.atomic()`:
the receipt commits or rolls back with the change it describes.

    receipt = emit_receipt(tenant_id=..., gate_id="budget-check", inputs={...}, result={...},
                           decision_status="pass", rationale="...", badges=[...],
                           policy_version_ids=[...], actor=principal.actor, degraded=False)
    emit_receipts_bulk([ReceiptDraft(...same keyword fields...), ...])
"""

import logging
import operator
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from django.db import IntegrityError, connections, transaction

from budgeting_site.platform import clock
from budgeting_site.platform.instance import INSTANCE_ID
from receipts import keys
from receipts.canonical import canonical_bytes, rfc3339, snapshot_hash, to_jsonable
from receipts.models import Receipt, SigningKey

logger = logging.getLogger(__name__)

GATE_IDS = frozenset(
    {
        "budget-check",
        "rate-limit-check",
        "cost-tracking",
        "quota-management",
        "approval",
        "policy-admin",
    }
)
DECISION_STATUSES = frozenset({"pass", "warn", "soft_block", "hard_block"})
#: The tenant of receipts that belong to no tenant (signing-key rotation).
SYSTEM_TENANT = "_system"

RECEIPT_FIELDS = (
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
)

_mono_lock = threading.Lock()
_last_mono_ms = 0


def _monotonic_ms(at: datetime) -> int:
    """Milliseconds since the epoch of `at`, but never below the last value of this process."""
    global _last_mono_ms
    wanted = int(at.timestamp() * 1000)
    with _mono_lock:
        _last_mono_ms = max(_last_mono_ms, wanted)
        return _last_mono_ms


def system_actor(job_name: str) -> dict[str, str]:
    """The `actor` of a receipt written by a scheduled job or a command."""
    return {"principal": f"system:{job_name}", "credential_id": "", "instance": INSTANCE_ID}


@dataclass
class ReceiptDraft:
    tenant_id: str
    gate_id: str
    inputs: dict[str, Any]
    result: dict[str, Any]
    decision_status: str
    rationale: str = ""
    badges: Sequence[str] = ()
    policy_version_ids: Sequence[str] = ()
    actor: dict[str, Any] | None = None
    degraded: bool = False
    #: Set it when the id must be known before the receipt is written (rate-limit drain).
    receipt_id: uuid.UUID | None = None
    #: When the decision was made; default: now.
    timestamp_utc: datetime | None = None


def _build(draft: ReceiptDraft, signer: keys.Signer) -> Receipt:
    if draft.gate_id not in GATE_IDS:
        raise ValueError(f"unknown gate_id {draft.gate_id!r}")
    if draft.decision_status not in DECISION_STATUSES:
        raise ValueError(f"unknown decision status {draft.decision_status!r}")
    if not draft.tenant_id or len(draft.tenant_id) > 128:
        raise ValueError("tenant_id must be 1..128 characters")
    at = draft.timestamp_utc or clock.now()
    # Stored and signed at microsecond precision: the column and the text agree exactly.
    at = at.astimezone(UTC)
    receipt_id = draft.receipt_id or uuid.uuid4()
    inputs = to_jsonable(draft.inputs or {})
    result = to_jsonable(draft.result or {})
    decision = {
        "status": draft.decision_status,
        "rationale": str(draft.rationale or ""),
        "badges": [str(b) for b in draft.badges],
    }
    body = {
        "receipt_id": str(receipt_id),
        "tenant_id": draft.tenant_id,
        "gate_id": draft.gate_id,
        "policy_version_ids": [str(p) for p in draft.policy_version_ids],
        "snapshot_hash": snapshot_hash(inputs, decision, result),
        "timestamp_utc": rfc3339(at),
        "timestamp_monotonic_ms": _monotonic_ms(at),
        "inputs": inputs,
        "decision": decision,
        "result": result,
        "actor": to_jsonable(draft.actor or system_actor("unknown")),
        "degraded": bool(draft.degraded),
        "kid": signer.kid,
    }
    signed = canonical_bytes(body)
    return Receipt(
        receipt_id=receipt_id,
        tenant_id=draft.tenant_id,
        gate_id=draft.gate_id,
        decision_status=draft.decision_status,
        timestamp_utc=at,
        kid=signer.kid,
        canonical=signed.decode("utf-8"),
        signature=signer.sign(signed),
    )


def emit_receipt(
    *,
    tenant_id: str,
    gate_id: str,
    inputs: dict[str, Any],
    result: dict[str, Any],
    decision_status: str,
    rationale: str = "",
    badges: Sequence[str] = (),
    policy_version_ids: Sequence[str] = (),
    actor: dict[str, Any] | None = None,
    degraded: bool = False,
    receipt_id: uuid.UUID | None = None,
    timestamp_utc: datetime | None = None,
) -> Receipt:
    """Sign and store one receipt, in the caller's transaction. Returns the saved row."""
    draft = ReceiptDraft(
        tenant_id=tenant_id,
        gate_id=gate_id,
        inputs=inputs,
        result=result,
        decision_status=decision_status,
        rationale=rationale,
        badges=badges,
        policy_version_ids=policy_version_ids,
        actor=actor,
        degraded=degraded,
        receipt_id=receipt_id,
        timestamp_utc=timestamp_utc,
    )
    receipt = sign_receipt(draft)
    receipt.save(force_insert=True)
    return receipt


def sign_receipt(draft: ReceiptDraft) -> Receipt:
    """The signed receipt of `draft`, not stored: for a caller that writes it itself in its
    own transaction (the budget check inserts it in the statement of its holds)."""
    return _build(draft, keys.active_signer())


def emit_receipts_bulk(
    drafts: Iterable[ReceiptDraft], *, skip_existing: bool = False, batch_size: int = 500
) -> list[Receipt]:
    """Sign and store many receipts with one key lookup and one COPY (`_insert`).

    `skip_existing=True` leaves out drafts whose `receipt_id` is already stored (a drain that
    runs twice, or two drains of the same entries at once): those already committed are not
    signed again, and the insert skips any that another writer stores meanwhile (ON CONFLICT
    DO NOTHING on the primary key, still insert-only). The receipts returned are the ones
    that were not stored when it looked; two concurrent writers may both return one.
    """
    drafts = list(drafts)
    if not drafts:
        return []
    if skip_existing:
        wanted = [d.receipt_id for d in drafts if d.receipt_id is not None]
        existing = set(
            Receipt.objects.filter(receipt_id__in=wanted).values_list("receipt_id", flat=True)
        )
        drafts = [d for d in drafts if d.receipt_id not in existing]
    signer = keys.active_signer()
    receipts = [_build(d, signer) for d in drafts]
    if receipts:
        _insert(receipts, batch_size=batch_size, ignore_conflicts=skip_existing)
    return receipts


#: What `_insert` writes of a receipt: every column, and the values in that order.
_FIELDS = Receipt._meta.concrete_fields
_COLUMNS = tuple(f.column for f in _FIELDS)
_values = operator.attrgetter(*(f.attname for f in _FIELDS))


def _insert(receipts: list[Receipt], *, batch_size: int, ignore_conflicts: bool) -> None:
    """Store the rows as `bulk_create` would, at a fraction of its client CPU.

    `bulk_create` sends PostgreSQL one array per column (UNNEST), and the client-side quoting
    of the canonical texts in those arrays (a regex substitution per quote character) was most
    of a drain's CPU. PostgreSQL gets a COPY instead (the rows in C, ~1.5 µs each); a COPY
    that meets a stored id (another drain committed it meanwhile) writes nothing and the rows
    go again through `bulk_create` (`ON CONFLICT DO NOTHING`), as they do on any other
    database: a rare path, where its cost does not matter.
    """
    connection = connections[Receipt.objects.db]
    with transaction.atomic(using=connection.alias):
        if connection.vendor == "postgresql" and _copy(connection, receipts, ignore_conflicts):
            return
        Receipt.objects.bulk_create(
            receipts, batch_size=batch_size, ignore_conflicts=ignore_conflicts
        )


def _copy(connection: Any, receipts: list[Receipt], ignore_conflicts: bool) -> bool:
    """COPY the rows (PostgreSQL); False, with nothing written, when one is already stored."""
    quote = connection.ops.quote_name
    sql = "COPY {} ({}) FROM STDIN".format(
        quote(Receipt._meta.db_table), ", ".join(quote(c) for c in _COLUMNS)
    )
    try:
        with (
            transaction.atomic(using=connection.alias),
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            cursor.copy(sql) as copy,
        ):
            for r in receipts:
                copy.write_row(_values(r))
    except IntegrityError:
        if not ignore_conflicts:
            raise
        return False
    return True


# --- Verification ---------------------------------------------------------------------------


_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: What a hostile object can make canonicalisation raise (deep nesting included).
_UNCANONICAL = (rfc8785.CanonicalizationError, ValueError, TypeError, OverflowError, RecursionError)


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str


def verify_receipt_object(obj: Any) -> Verdict:
    """Check a receipt object as a client holds it: shape, kid, signature, snapshot hash.

    Reasons: `ok`, `malformed`, `missing_signature`, `unknown_kid`, `bad_signature`,
    `snapshot_hash_mismatch`.
    """
    if not isinstance(obj, dict):
        return Verdict(False, "malformed")
    signature = obj.get("signature")
    if not isinstance(signature, str) or not signature:
        return Verdict(False, "missing_signature")
    kid = obj.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        return Verdict(False, "unknown_kid")
    public = keys.public_key(kid)
    if public is None:
        return Verdict(False, "unknown_kid")
    unsigned = {k: v for k, v in obj.items() if k != "signature"}
    try:
        data = canonical_bytes(unsigned)
        raw_signature = keys.b64url_decode(signature)
    except _UNCANONICAL:
        return Verdict(False, "malformed")
    try:
        public.verify(raw_signature, data)
    except InvalidSignature:
        return Verdict(False, "bad_signature")
    try:
        expected = snapshot_hash(
            unsigned.get("inputs"), unsigned.get("decision"), unsigned.get("result")
        )
    except _UNCANONICAL:
        return Verdict(False, "malformed")
    if unsigned.get("snapshot_hash") != expected:
        return Verdict(False, "snapshot_hash_mismatch")
    return Verdict(True, "ok")


def verify_stored(receipt: Receipt) -> Verdict:
    """A stored row: its canonical text must verify, and its columns must match the text."""
    import json

    try:
        body = json.loads(receipt.canonical)
    except ValueError:
        return Verdict(False, "malformed")
    if not isinstance(body, dict):
        return Verdict(False, "malformed")
    verdict = verify_receipt_object({**body, "signature": receipt.signature})
    if not verdict.valid:
        return verdict
    columns_agree = (
        body.get("receipt_id") == str(receipt.receipt_id)
        and body.get("tenant_id") == receipt.tenant_id
        and body.get("gate_id") == receipt.gate_id
        and body.get("kid") == receipt.kid
        and (body.get("decision") or {}).get("status") == receipt.decision_status
        and body.get("timestamp_utc") == rfc3339(receipt.timestamp_utc)
    )
    if not columns_agree:
        return Verdict(False, "columns_mismatch")
    return Verdict(True, "ok")


# --- Keys -----------------------------------------------------------------------------------


def rotate_signing_key(*, actor: dict[str, Any]) -> SigningKey:
    """Make a fresh key active and retire the current one (it keeps verifying). Writes a
    `policy-admin` receipt, signed by the new key, that names both kids."""
    with transaction.atomic():
        previous = (
            SigningKey.objects.select_for_update()
            .filter(status=SigningKey.Status.ACTIVE)
            .values_list("kid", flat=True)
            .first()
        )
        row = keys.generate_and_activate()
        emit_receipt(
            tenant_id=SYSTEM_TENANT,
            gate_id="policy-admin",
            inputs={"operation": "rotate_signing_key", "previous_kid": previous},
            result={"active_kid": row.kid, "retired_kid": previous},
            decision_status="pass",
            rationale="signing key rotated",
            actor=actor,
        )
    logger.info("receipts.signing_key_rotated", extra={"kid": row.kid, "previous": previous})
    return row


def ensure_signing_key() -> SigningKey:
    """Make sure an active key exists (first use, or a changed RECEIPT_SIGNING_KEY)."""
    with transaction.atomic():
        signer = keys.active_signer()
    return SigningKey.objects.get(kid=signer.kid)
