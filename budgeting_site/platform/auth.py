"""Authentication: JWT (PyJWT, algorithms pinned by configuration) and API keys."""

import hashlib
import hmac
import logging
import secrets
import threading
import time
from datetime import timedelta
from functools import lru_cache
from typing import Any

import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from budgeting_site.platform import clock
from budgeting_site.platform.errors import Unauthorized
from budgeting_site.platform.models import ROLES, ApiKey
from budgeting_site.platform.principal import Principal

logger = logging.getLogger(__name__)

_HMAC_ALGS = {"HS256", "HS384", "HS512"}
API_KEY_PREFIX = "bsk"
#: Seconds of clock skew allowed on exp, nbf and iat.
LEEWAY = 5


@lru_cache(maxsize=1)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def _verification_key(token: str, alg: str) -> Any:
    if alg in _HMAC_ALGS:
        return settings.JWT_SECRET
    if settings.JWT_PUBLIC_KEY:
        return settings.JWT_PUBLIC_KEY
    if settings.JWT_JWKS_URL:
        return _jwks_client(settings.JWT_JWKS_URL).get_signing_key_from_jwt(token).key
    raise Unauthorized("No key is configured for this token's algorithm")


def decode_jwt(token: str) -> dict[str, Any]:
    """Verify a JWT. The accepted algorithms come from configuration, never from the token:
    the header's `alg` only picks among them (so `none` and HS/RS confusion are refused)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("Malformed token") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in settings.JWT_ALGORITHMS:
        raise Unauthorized("Token algorithm is not accepted")
    try:
        return jwt.decode(
            token,
            _verification_key(token, alg),
            algorithms=[alg],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            options={"require": ["exp", "sub"], "verify_aud": settings.JWT_AUDIENCE is not None},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthorized("Token audience is not accepted") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthorized("Token issuer is not accepted") from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized("Token is not valid") from exc


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    tenant_id = claims.get("tenant_id")
    if not isinstance(tenant_id, str) or not tenant_id or len(tenant_id) > 128:
        raise Unauthorized("Token has no tenant_id")
    roles = claims.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("Token roles must be a list of strings")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Token has no sub")
    return Principal(
        principal=sub,
        tenant_id=tenant_id,
        roles=frozenset(r for r in roles if r in ROLES),
        credential_id=str(claims.get("jti") or ""),
        kind="jwt",
    )


def issue_jwt(
    *, tenant_id: str, roles: list[str], sub: str, ttl_seconds: int = 3600, **extra: Any
) -> str:
    """Signs with the development secret (HS256): for `issue_token`, tests and demos."""
    now = clock.now()
    claims: dict[str, Any] = {
        "sub": sub,
        "tenant_id": tenant_id,
        "roles": roles,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        **extra,
    }
    if settings.JWT_AUDIENCE and "aud" not in claims:
        claims["aud"] = settings.JWT_AUDIENCE
    if settings.JWT_ISSUER and "iss" not in claims:
        claims["iss"] = settings.JWT_ISSUER
    return jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")


class VerifiedTokens:
    """The tokens this process has verified, so that a client sending the same token on every
    request pays for its signature once (PyJWT and the key's cryptography cost more than the
    rest of a rate-limit check's authentication).

    Keyed by the exact token text; an entry holds the principal built from its claims and the
    time window its claims allow (exp, nbf and iat, with the same leeway), checked on every use.
    A token outside that window, or not verified for `MAX_AGE_SECONDS` (a key removed from the
    JWKS, whose client keeps keys as long), goes through `decode_jwt` again, which answers with
    the same 401s as always. Any change of a `JWT_*` setting empties it. Bounded: the oldest
    entries go first. API keys are never kept here (a revoked key is refused at once).
    """

    MAX_ENTRIES = 4096
    MAX_AGE_SECONDS = 60.0

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float, float, float]] = {}
        self._lock = threading.Lock()

    def principal(self, token: str) -> Principal:
        now = time.time()
        entry = self._entries.get(token)
        if entry is not None:
            principal, not_before, expires, verified_at = entry
            in_window = not_before <= now + LEEWAY and expires > now - LEEWAY
            if in_window and now - verified_at < self.MAX_AGE_SECONDS:
                return principal
        claims = decode_jwt(token)
        principal = principal_from_claims(claims)
        # decode_jwt has checked that exp (required), nbf and iat are integers.
        not_before = max(int(claims.get("nbf", 0)), int(claims.get("iat", 0)))
        with self._lock:
            self._entries.pop(token, None)
            if len(self._entries) >= self.MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries[token] = (principal, not_before, int(claims["exp"]), now)
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_tokens = VerifiedTokens()


@receiver(setting_changed)
def _forget_verified_tokens(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("JWT_"):
        verified_tokens.clear()


class JWTAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        return verified_tokens.principal(token.strip()), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="budget"'


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_api_key() -> tuple[str, str, str]:
    """(plaintext, prefix, sha256): 32 random bytes behind a short lookup prefix."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    return plaintext, prefix, hash_secret(plaintext)


# last_used_at is written at most this often per key, so a busy key is not a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, ApiKey] | None:
        plaintext = request.META.get("HTTP_X_API_KEY")
        if plaintext is None:
            return None
        parts = plaintext.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
            raise Unauthorized("API key is not valid")
        key = ApiKey.objects.filter(prefix=parts[1]).first()
        # Compare even when no key matched, so timing says nothing about which prefixes exist.
        expected = key.secret_hash if key else "0" * 64
        if not hmac.compare_digest(expected, hash_secret(plaintext.strip())) or key is None:
            raise Unauthorized("API key is not valid")
        if key.revoked_at is not None:
            raise Unauthorized("API key has been revoked")
        now = clock.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        principal = Principal(
            principal=f"key:{key.id}",
            tenant_id=key.tenant_id,
            roles=frozenset(r for r in key.roles if r in ROLES),
            credential_id=str(key.id),
            kind="api_key",
        )
        return principal, key

    def authenticate_header(self, request: Request) -> str:
        return "X-API-Key"
