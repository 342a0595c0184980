"""Reads of receipts and keys, always scoped to a tenant (keys are global and public)."""

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from budgeting_site.platform.queries import filter_given
from receipts.exceptions import InvalidCursor, ReceiptNotFound
from receipts.keys import b64url
from receipts.models import Receipt, SigningKey


def receipt_for(*, tenant_id: str, receipt_id: uuid.UUID) -> Receipt:
    receipt = Receipt.objects.filter(tenant_id=tenant_id, pk=receipt_id).first()
    if receipt is None:
        raise ReceiptNotFound()
    return receipt


def receipts_for(
    *,
    tenant_id: str,
    gate_id: str | None = None,
    decision: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> QuerySet[Receipt]:
    """Newest first; the time range is half-open `[start_time, end_time)`."""
    return filter_given(
        Receipt.objects.filter(tenant_id=tenant_id),
        gate_id=gate_id,
        decision_status=decision,
        timestamp_utc__gte=start_time,
        timestamp_utc__lt=end_time,
    ).order_by("-timestamp_utc", "-receipt_id")


def encode_cursor(receipt: Receipt) -> str:
    raw = json.dumps([receipt.timestamp_utc.isoformat(), str(receipt.receipt_id)])
    return b64url(raw.encode("utf-8"))


def after_cursor(qs: QuerySet[Receipt], cursor: str) -> QuerySet[Receipt]:
    """Keyset paging on (timestamp_utc, receipt_id) descending: stable under inserts and
    as fast on the millionth page as on the first."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, id_text = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        at = parse_datetime(at_text)
        last_id = uuid.UUID(id_text)
        if at is None or at.tzinfo is None:
            raise ValueError("not an instant")
        at = at.astimezone(UTC)  # an offset past the calendar: OverflowError
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursor(details={"cursor": ["not a cursor from this API"]}) from exc
    return qs.filter(Q(timestamp_utc__lt=at) | Q(timestamp_utc=at, receipt_id__lt=last_id))


def public_jwks() -> dict[str, Any]:
    """Every key ever used, as RFC 8037 JWKs with status and validity (RFC 3339)."""
    from receipts.canonical import rfc3339

    keys = []
    for row in SigningKey.objects.order_by("-created_at"):
        keys.append(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": row.public_key,
                "kid": row.kid,
                "alg": "EdDSA",
                "use": "sig",
                "status": row.status,
                "valid_from": rfc3339(row.created_at),
                "valid_until": rfc3339(row.retired_at) if row.retired_at else None,
            }
        )
    return {"keys": keys}
