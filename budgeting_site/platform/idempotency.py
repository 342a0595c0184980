"""`Idempotency-Key` for every POST/PUT/PATCH/DELETE (SPEC 1.4), one mechanism for all views.

The first request with a key inserts an in-flight row (its own commit, behind a unique
constraint): concurrent duplicates lose the insert and get a 409 while it runs, the replayed
answer once it is done, or a 422 when their request differs. Only final answers are kept; a
401/403/409/429/5xx deletes the row so that a retry can run.

A claim is alive exactly as long as its request: on PostgreSQL the request's database session
holds an advisory lock on the row, taken in the transaction that inserts it. A session that
ends (the connection terminated or dropped, the process killed) frees the lock, so a retry
that meets an in-flight row whose lock it can take knows the owner is gone and takes the row
over at once; nothing of the owner was kept, since its handler and its answer commit together.
Where there are no advisory locks (SQLite), or a session outlives its request, a row older
than `STALE_AFTER` may be taken over (docs/idempotency.md).
"""

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
#: The first of the two int4 keys of a claim's advisory lock (the second is its row id), so
#: claims never share a lock with the single-bigint locks other code takes.
_LOCK_SPACE = 0x1DE3
_REPLAYED_HEADERS = ("Location", "Content-Type")
_TICK = timedelta(microseconds=1)


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
    #: The row's `created_at` as this request set it: a retry that takes the row over sets
    #: another, so a request never stores its answer in, nor frees, a claim that is not its own.
    token: datetime
    #: The database connection whose session holds the claim's advisory lock (None: no lock).
    session: object | None = None


def _lock_keys(record_id: int) -> list[int]:
    return [_LOCK_SPACE, record_id % 2**32 - 2**31]


def _lock(record_id: int) -> object | None:
    """Hold the claim's lock for this session; the connection if it is now held."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_keys(record_id))
        held = cursor.fetchone()[0]
    return connection.connection if held else None


def _unlock(claim: Claim) -> None:
    # Only the session that took the lock holds it; a lock of a lost session is gone already.
    if claim.session is not None and connection.connection is claim.session:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_keys(claim.record_id))
    claim.session = None


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
                # Locked before the row is visible to anyone: no duplicate sees it unlocked
                # while this request lives. A connection lost around the commit takes the lock
                # with it, so a claim that did commit is free to be taken over by the retry.
                session = _lock(record.pk)
            return Claim(record.pk, now, session)
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
            session = _lock(existing.pk)
            if session is not None or now - existing.created_at > STALE_AFTER:
                # Its owner is gone. The update waits for an owner's transaction that stored
                # its answer and unlocked but has not committed yet, and then matches nothing.
                token = max(now, existing.created_at + _TICK)
                taken = IdempotencyRecord.objects.filter(
                    pk=existing.pk,
                    state=IdempotencyRecord.State.IN_FLIGHT,
                    created_at=existing.created_at,
                ).update(created_at=token)
                claim = Claim(existing.pk, token, session)
                if taken:
                    return claim
                _unlock(claim)
                continue
            raise Conflict(
                "A request with this Idempotency-Key is still in flight",
                details={"idempotency_key": key},
                retriable=True,
            ) from None
    raise Conflict("Idempotency-Key is contended; retry", retriable=True)


def finish(claim: Claim, response: HttpResponse) -> None:
    """Store the answer (or free the key), then unlock. Inside the handler's transaction the
    unlock takes effect before the commit; the row stays locked by the update until then.

    A claim taken over meanwhile (its owner was thought gone) is not ours to answer: inside
    the handler's transaction that is a 409, so the effect rolls back rather than commit
    without its answer."""
    status = response.status_code
    if status in _NOT_KEPT or status >= 500:
        release(claim)
        return
    headers = {h: response[h] for h in _REPLAYED_HEADERS if response.has_header(h)}
    stored = IdempotencyRecord.objects.filter(pk=claim.record_id, created_at=claim.token).update(
        state=IdempotencyRecord.State.DONE,
        response_status=status,
        response_body=bytes(response.content),
        response_headers=headers,
    )
    _unlock(claim)
    if not stored and connection.in_atomic_block:
        raise Conflict("A retry with this Idempotency-Key took it over", retriable=True)


def release(claim: Claim) -> None:
    """Free the key for a retry. The answer may be a 503 for a lost database connection: then
    closing the connection ends its session, and the claim's lock with it, so a retry takes
    the claim over (without advisory locks, once it is `STALE_AFTER` old)."""
    try:
        IdempotencyRecord.objects.filter(pk=claim.record_id, created_at=claim.token).delete()
        _unlock(claim)
    except (OperationalError, InterfaceError):
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
