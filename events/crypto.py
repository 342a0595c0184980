"""Webhook signing secrets: `whsec_` + base64 of 32 random bytes (Standard Webhooks), sealed
at rest with AES-256-GCM under a key derived from SECRET_KEY (HKDF-SHA256). The secret must be
recoverable to sign each delivery, so it is encrypted rather than hashed."""

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_INFO = b"events.webhook-secret.v1"
_ENGINE_INFO = b"events.notification-engine-secret.v1"
PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def _derive(info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        settings.SECRET_KEY.encode("utf-8")
    )


def _key() -> bytes:
    return _derive(_INFO)


def notification_engine_secret() -> str:
    """The secret that signs deliveries to `NOTIFICATION_ENGINE_URL` (Standard Webhooks, like
    a subscription's): `NOTIFICATION_ENGINE_SECRET` when configured (`whsec_` + base64),
    otherwise one derived from SECRET_KEY, stable across restarts and processes;
    `manage.py notification_engine_secret` prints it for the engine's configuration."""
    configured = getattr(settings, "NOTIFICATION_ENGINE_SECRET", None)
    if configured:
        secret = str(configured)
        try:
            raw = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
            if not secret.startswith(PREFIX) or len(raw) < 24:
                raise ValueError
        except ValueError as exc:  # binascii.Error is a ValueError
            raise ImproperlyConfigured(
                "NOTIFICATION_ENGINE_SECRET must be whsec_ + base64 of at least 24 bytes"
            ) from exc
        return secret
    return PREFIX + base64.b64encode(_derive(_ENGINE_INFO)).decode("ascii")


def seal(secret: str, aad: str) -> str:
    nonce = os.urandom(12)
    blob = nonce + AESGCM(_key()).encrypt(nonce, secret.encode("ascii"), aad.encode("ascii"))
    return "v1:" + base64.b64encode(blob).decode("ascii")


def unseal(sealed: str, aad: str) -> str:
    blob = base64.b64decode(sealed.removeprefix("v1:"))
    return AESGCM(_key()).decrypt(blob[:12], blob[12:], aad.encode("ascii")).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the decoded secret."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
