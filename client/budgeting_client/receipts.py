"""Offline receipt verification (SPEC 6), no I/O here.

- canonical bytes: RFC 8785 (JCS) of the receipt without `signature`;
- `signature`: Ed25519 over those bytes, base64url;
- `snapshot_hash`: `"sha256:" + hex(sha256(JCS({inputs, decision, result})))`;
- keys: `GET /receipts/keys` → `{"keys": [JWK (RFC 8037) kty OKP, crv Ed25519, x, kid]}`.

`ReceiptVerifier` / `AsyncReceiptVerifier` (in `_sync` / `_async`) add the key cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Verdicts (`Verification.reason`).
OK = "ok"
MALFORMED = "malformed"
MISSING_SIGNATURE = "missing_signature"
UNKNOWN_KID = "unknown_kid"
KEY_REVOKED = "key_revoked"
BAD_SIGNATURE = "bad_signature"
SNAPSHOT_MISMATCH = "snapshot_hash_mismatch"


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_bytes(receipt: Mapping[str, Any]) -> bytes:
    """RFC 8785 of the receipt without `signature`: what the signature covers."""
    return rfc8785.dumps({k: v for k, v in receipt.items() if k != "signature"})


def snapshot_hash(receipt: Mapping[str, Any]) -> str:
    snapshot = {
        "inputs": receipt.get("inputs"),
        "decision": receipt.get("decision"),
        "result": receipt.get("result"),
    }
    return "sha256:" + hashlib.sha256(rfc8785.dumps(snapshot)).hexdigest()


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    public_key: Ed25519PublicKey
    status: str | None
    jwk: dict[str, Any]


def parse_jwk(jwk: Mapping[str, Any]) -> PublishedKey | None:
    """A published key, or None for anything that is not an Ed25519 OKP JWK."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not jwk.get("kid"):
        return None
    try:
        raw = b64url_decode(str(jwk.get("x", "")))
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        return None
    status = jwk.get("status")
    return PublishedKey(
        kid=str(jwk["kid"]),
        public_key=public_key,
        status=str(status) if status is not None else None,
        jwk=dict(jwk),
    )


def parse_jwks(
    document: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> dict[str, PublishedKey]:
    keys = document.get("keys", []) if isinstance(document, Mapping) else document
    out: dict[str, PublishedKey] = {}
    for jwk in keys or []:
        if isinstance(jwk, Mapping):
            key = parse_jwk(jwk)
            if key is not None:
                out[key.kid] = key
    return out


@dataclass(frozen=True)
class Verification:
    receipt_id: str | None
    valid: bool
    reason: str
    kid: str | None = None

    def __bool__(self) -> bool:
        return self.valid


def verify_with_key(receipt: Mapping[str, Any], key: PublishedKey | None) -> Verification:
    """The verdict on one receipt given the key its `kid` names (None: not published)."""
    receipt_id = receipt.get("receipt_id")
    receipt_id = str(receipt_id) if receipt_id is not None else None
    kid = receipt.get("kid")
    kid = str(kid) if kid is not None else None
    signature = receipt.get("signature")
    if not isinstance(signature, str) or not signature:
        return Verification(receipt_id, False, MISSING_SIGNATURE, kid)
    if key is None:
        return Verification(receipt_id, False, UNKNOWN_KID, kid)
    if key.status == "revoked":
        return Verification(receipt_id, False, KEY_REVOKED, kid)
    try:
        message = canonical_bytes(receipt)
        expected_snapshot = snapshot_hash(receipt)
        raw_signature = b64url_decode(signature)
    except (rfc8785.CanonicalizationError, ValueError, binascii.Error, TypeError):
        return Verification(receipt_id, False, MALFORMED, kid)
    try:
        key.public_key.verify(raw_signature, message)
    except InvalidSignature:
        return Verification(receipt_id, False, BAD_SIGNATURE, kid)
    if receipt.get("snapshot_hash") != expected_snapshot:
        # Signed, yet the hash does not describe the signed content: the signer is broken.
        return Verification(receipt_id, False, SNAPSHOT_MISMATCH, kid)
    return Verification(receipt_id, True, OK, kid)


def read_receipts(text: str) -> Iterator[tuple[int, Any]]:
    """Receipts from a file's text: one JSON object, a JSON array, `{"receipts": [...]}` (a
    saved list page), or JSON lines. Yields (position, parsed value or the error text)."""
    stripped = text.strip()
    if not stripped:
        return
    if stripped[0] in "[{":
        try:
            document = json.loads(stripped)
        except ValueError:
            document = None
        if isinstance(document, list):
            yield from enumerate(document, start=1)
            return
        if isinstance(document, dict):
            items = document.get("receipts")
            if isinstance(items, list) and "signature" not in document:
                yield from enumerate(items, start=1)
            else:
                yield 1, document
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, f"not JSON: {exc}"
