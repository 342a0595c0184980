"""`Idempotency-Key` for every POST/PUT/PATCH/DELETE (SPEC 1.4), one mechanism for all views.

The first request with a key inserts an in-flight row (autocommit, behind a unique
constraint): concurrent duplicates lose the insert and get a 409 while it runs, the replayed
answer once it is done, or a 422 when their request differs. Only final answers are kept; a
401/403/409/429/5xx deletes the row so that a retry can run.

A request that dies between its effect and storing its answer leaves an in-flight row; after
`STALE_AFTER` such a row may be taken over by a retry (documented in docs/idempotency.md).
"""

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import rfc8785
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.http import HttpResponse

from budgeting_site.platform import clock
from budgeting_site.platform.errors import Conflict, IdempotencyKeyReused, ValidationFailed
from budgeting_site.platform.models import IdempotencyRecord

HEADERS = ("HTTP_IDEMPOTENCY_KEY", "HTTP_X_IDEMPOTENCY_KEY")
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_TTL = timedelta(hours=24)
STALE_AFTER = timedelta(minutes=5)
MAX_KEY_LENGTH = 255
_NOT_KEPT = {401, 403, 409, 429}
_REPLAYED_HEADERS = ("Location", "Content-Type")


def _normalise(value: object) -> object:
    # Numbers compare by value: 1, 1.0 and "1.0" parsed as a number are the same request.
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        as_float = float(value)
        return int(as_float) if as_float.is_integer() and abs(as_float) < 2**53 else as_float
    return value


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(method.encode())
    digest.update(b"\n")
    digest.update(path.encode())
    digest.update(b"\n")
    digest.update("&".join(sorted(query.split("&"))).encode() if query else b"")
    digest.update(b"\n")
    try:
        digest.update(rfc8785.dumps(_normalise(json.loads(body or b"null"))))  # type: ignore[arg-type]
    except (ValueError, rfc8785.CanonicalizationError):
        digest.update(body)
    return digest.hexdigest()


def key_from(meta: dict[str, str]) -> str | None:
    for header in HEADERS:
        value = meta.get(header)
        if value is not None:
            value = value.strip()
            if not value or len(value) > MAX_KEY_LENGTH:
                raise ValidationFailed(
                    f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                    details={"Idempotency-Key": ["invalid length"]},
                )
            return value
    return None


@dataclass
class Claim:
    record_id: int


def begin(
    *, tenant_id: str, key: str, print_: str, ttl: timedelta = DEFAULT_TTL
) -> Claim | HttpResponse:
    """Claim the key, or answer with the replay / 409 / 422 it calls for."""
    now = clock.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    tenant_id=tenant_id,
                    key=key,
                    fingerprint=print_,
                    created_at=now,
                    expires_at=now + ttl,
                )
            return Claim(record.pk)
        except (OperationalError, InterfaceError):
            # The insert may have committed just before the connection died: take our own
            # claim back (its created_at, to the microsecond, is ours), so a retry is not
            # told "in flight" for minutes.
            _forget_lost_claim(tenant_id, key, print_, now)
            raise
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(tenant_id=tenant_id, key=key).first()
            if existing is None:
                continue  # freed between our insert and our read: try again
            if existing.expires_at <= now:
                IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
                continue
            if existing.fingerprint != print_:
                raise IdempotencyKeyReused(details={"idempotency_key": key}) from None
            if existing.state == IdempotencyRecord.State.DONE:
                return _replay(existing)
            if now - existing.created_at > STALE_AFTER:
                taken = IdempotencyRecord.objects.filter(
                    pk=existing.pk,
                    state=IdempotencyRecord.State.IN_FLIGHT,
                    created_at=existing.created_at,
                ).update(created_at=now)
                if taken:
                    return Claim(existing.pk)
            raise Conflict(
                "A request with this Idempotency-Key is still in flight",
                details={"idempotency_key": key},
                retriable=True,
            ) from None
    raise Conflict("Idempotency-Key is contended; retry", retriable=True)


def finish(claim: Claim, response: HttpResponse) -> None:
    status = response.status_code
    if status in _NOT_KEPT or status >= 500:
        release(claim)
        return
    headers = {h: response[h] for h in _REPLAYED_HEADERS if response.has_header(h)}
    IdempotencyRecord.objects.filter(pk=claim.record_id).update(
        state=IdempotencyRecord.State.DONE,
        response_status=status,
        response_body=bytes(response.content),
        response_headers=headers,
    )


def _forget_lost_claim(tenant_id: str, key: str, print_: str, created_at: datetime) -> None:
    connection.close()
    with contextlib.suppress(OperationalError, InterfaceError):
        IdempotencyRecord.objects.filter(
            tenant_id=tenant_id,
            key=key,
            fingerprint=print_,
            state=IdempotencyRecord.State.IN_FLIGHT,
            created_at=created_at,
        ).delete()


def release(claim: Claim) -> None:
    """Free the key for a retry. The answer may be a 503 for a lost database connection: then
    the old connection is useless, so try once more on a fresh one."""
    for attempt in range(2):
        try:
            IdempotencyRecord.objects.filter(pk=claim.record_id).delete()
            return
        except (OperationalError, InterfaceError):
            if attempt:
                raise
            connection.close()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body or b""),
        status=record.response_status,
        content_type=record.response_headers.get("Content-Type", "application/json"),
    )
    for header, value in record.response_headers.items():
        response[header] = value
    response["Idempotent-Replayed"] = "true"
    return response


def purge_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=clock.now()).delete()
    return deleted
