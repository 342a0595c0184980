"""Receipt signing keys: loading, generating once, sealing at rest, rotation, public lookup.

- `RECEIPT_SIGNING_KEY` (base64 of a raw 32-byte Ed25519 private key, or of its PKCS#8 DER)
  makes that key the active one; its private half is never written to the database.
- Otherwise a key is generated on first use and stored sealed with AES-256-GCM under a key
  derived from `SECRET_KEY` by HKDF-SHA256, so it survives restarts and is useless without the
  secret.
- The kid is the RFC 7638 thumbprint of the public JWK, so a key has the same kid everywhere.
- Retired keys keep their public half published and keep verifying.
"""

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from budgeting_site.platform import clock
from receipts.models import SigningKey

logger = logging.getLogger(__name__)

_SEAL_INFO = b"receipts.signing-key.v1"
_lock = threading.Lock()
#: kid → private key; a kid names one key forever, so this never goes stale.
_private_cache: dict[str, Ed25519PrivateKey] = {}
#: kid → public key, same reasoning.
_public_cache: dict[str, Ed25519PublicKey] = {}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def thumbprint_kid(raw_public: bytes) -> str:
    """RFC 7638: SHA-256 over the JWK's required members in lexicographic order."""
    members = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw_public)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(members.encode("ascii")).digest())


def _sealing_key() -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
        settings.SECRET_KEY.encode("utf-8")
    )


def seal(raw_private: bytes, kid: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key()).encrypt(nonce, raw_private, kid.encode("ascii"))
    return "v1:" + b64url(nonce + sealed)


def unseal(text: str, kid: str) -> bytes:
    if not text.startswith("v1:"):
        raise ValueError("unknown sealed-key format")
    blob = b64url_decode(text[3:])
    try:
        return AESGCM(_sealing_key()).decrypt(blob[:12], blob[12:], kid.encode("ascii"))
    except InvalidTag as exc:
        raise ValueError("the signing key cannot be unsealed: SECRET_KEY changed?") from exc


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """`RECEIPT_SIGNING_KEY`: base64 (standard or URL-safe) of 32 raw bytes or PKCS#8 DER."""
    cleaned = "".join(text.split())
    try:
        data = base64.b64decode(
            cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4)
        )
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured("RECEIPT_SIGNING_KEY is not base64") from exc
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_der_private_key(data, password=None)
    except ValueError as exc:
        raise ImproperlyConfigured(
            "RECEIPT_SIGNING_KEY is neither 32 raw bytes nor a PKCS#8 Ed25519 key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("RECEIPT_SIGNING_KEY is not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Signer:
    kid: str
    key: Ed25519PrivateKey

    def sign(self, data: bytes) -> str:
        return b64url(self.key.sign(data))


def _env_key() -> Ed25519PrivateKey | None:
    raw = getattr(settings, "RECEIPT_SIGNING_KEY", None)
    return parse_private_key(raw) if raw else None


def _insert_active(key: Ed25519PrivateKey, source: str) -> SigningKey:
    """Insert `key` as the active key, retiring the one before it. Inside a savepoint, so that
    a concurrent first use (the unique active-key constraint) just re-reads the winner."""
    raw_public = _raw_public(key)
    kid = thumbprint_kid(raw_public)
    now = clock.now()
    with transaction.atomic():
        SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).exclude(kid=kid).update(
            status=SigningKey.Status.RETIRED, retired_at=now
        )
        row, created = SigningKey.objects.get_or_create(
            kid=kid,
            defaults={
                "public_key": b64url(raw_public),
                "private_key_sealed": (
                    "" if source == SigningKey.Source.ENVIRONMENT else seal(_raw_private(key), kid)
                ),
                "status": SigningKey.Status.ACTIVE,
                "source": source,
                "created_at": now,
            },
        )
        if not created and row.status != SigningKey.Status.ACTIVE:
            SigningKey.objects.filter(kid=kid).update(
                status=SigningKey.Status.ACTIVE, retired_at=None
            )
            row.status = SigningKey.Status.ACTIVE
    _private_cache[kid] = key
    reset_caches()
    _uncommitted.add(kid)
    transaction.on_commit(lambda: _uncommitted.discard(kid))
    logger.info("receipts.signing_key_activated", extra={"kid": kid, "source": source})
    return row


#: How long a process keeps using the active kid it last read before asking again. A rotation
#: made by another process is picked up within this time; receipts signed meanwhile carry the
#: just-retired kid, which keeps verifying.
ACTIVE_KEY_TTL_SECONDS = 1.0
_active_cache: tuple[str | None, str, float] | None = None  # (env value, kid, read at)
#: kids inserted by a transaction that has not committed yet: never cached (it may roll back).
_uncommitted: set[str] = set()


def reset_caches(**_: object) -> None:
    """Forget the active kid (after a rotation here, or a flush of the tables in tests)."""
    global _active_cache
    _active_cache = None


def active_signer() -> Signer:
    """The key new receipts are signed with. The active kid is read from the database at most
    once a second per process; the private key is decrypted once per kid."""
    global _active_cache
    env_value = getattr(settings, "RECEIPT_SIGNING_KEY", None) or None
    cached = _active_cache
    if (
        cached is not None
        and cached[0] == env_value
        and time.monotonic() - cached[2] < ACTIVE_KEY_TTL_SECONDS
        and cached[1] in _private_cache
    ):
        return Signer(kid=cached[1], key=_private_cache[cached[1]])
    env_key = parse_private_key(env_value) if env_value else None
    env_kid = thumbprint_kid(_raw_public(env_key)) if env_key is not None else None
    row = (
        SigningKey.objects.filter(status=SigningKey.Status.ACTIVE)
        .only("kid", "private_key_sealed", "source")
        .first()
    )
    if env_key is not None and (row is None or row.kid != env_kid):
        row = _ensure(env_key, SigningKey.Source.ENVIRONMENT)
    elif row is None:
        row = _ensure(Ed25519PrivateKey.generate(), SigningKey.Source.GENERATED)
    signer = Signer(kid=row.kid, key=_private_for(row))
    if row.kid not in _uncommitted:
        _active_cache = (env_value, row.kid, time.monotonic())
    return signer


def _ensure(key: Ed25519PrivateKey, source: str) -> SigningKey:
    try:
        return _insert_active(key, source)
    except IntegrityError:
        # Another process activated a key first; use it (or, for an env key, try once more).
        row = SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).first()
        if row is None:
            raise
        if source == SigningKey.Source.ENVIRONMENT and row.kid != thumbprint_kid(_raw_public(key)):
            return _insert_active(key, source)
        return row


def _private_for(row: SigningKey) -> Ed25519PrivateKey:
    cached = _private_cache.get(row.kid)
    if cached is not None:
        return cached
    with _lock:
        if row.source == SigningKey.Source.ENVIRONMENT:
            key = _env_key()
            if key is None or thumbprint_kid(_raw_public(key)) != row.kid:
                raise ImproperlyConfigured(
                    f"signing key {row.kid} came from RECEIPT_SIGNING_KEY, which no longer holds it"
                )
        else:
            key = Ed25519PrivateKey.from_private_bytes(unseal(row.private_key_sealed, row.kid))
        _private_cache[row.kid] = key
        return key


def generate_and_activate() -> SigningKey:
    """Rotation: a fresh key becomes active; the previous one is retired (still verifying)."""
    if _env_key() is not None:
        raise ImproperlyConfigured(
            "RECEIPT_SIGNING_KEY is set: rotate by changing it (the old public key stays published)"
        )
    return _insert_active(Ed25519PrivateKey.generate(), SigningKey.Source.GENERATED)


def public_key(kid: str) -> Ed25519PublicKey | None:
    cached = _public_cache.get(kid)
    if cached is not None:
        return cached
    raw = SigningKey.objects.filter(kid=kid).values_list("public_key", flat=True).first()
    if raw is None:
        return None
    key = Ed25519PublicKey.from_public_bytes(b64url_decode(raw))
    _public_cache[kid] = key
    return key


def check_health() -> None:
    """Health: an active key can be loaded (and unsealed) and signs what it verifies."""
    signer = active_signer()
    probe = b"health"
    signer.key.public_key().verify(b64url_decode(signer.sign(probe)), probe)
