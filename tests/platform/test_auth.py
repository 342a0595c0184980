import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings

from budgeting_site.platform.models import AuditLogEntry
from budgeting_site.platform.services import create_api_key, revoke_api_key

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.platform.urls")]

URL = "/budget/v1/_test/widgets"
BODY = {"name": "w", "size": "1.50"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides):
    claims = {
        "sub": "svc",
        "tenant_id": "t-acme",
        "roles": ["tenant_admin"],
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims, secret=None):
    return jwt.encode(claims, secret or django_settings.JWT_SECRET, algorithm="HS256")


def _post(api, token=None, headers=None):
    extra = dict(headers or {})
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return api.post(URL, BODY, format="json", **extra)


def _assert_401(response, created_before=0):
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["error_code"] == "UNAUTHORIZED"
    assert set(body) == {"error_code", "message", "correlation_id", "details", "retriable"}
    assert body["retriable"] is False
    assert AuditLogEntry.objects.filter(action="widget_created").count() == created_before


def test_valid_token_is_accepted(api):
    response = _post(api, _hs256(_claims()))
    assert response.status_code == 201, response.content
    assert response.json() == {"id": response.json()["id"], "name": "w", "size": 1.5}


def test_no_token_is_401(api):
    _assert_401(_post(api))


def test_garbage_token_is_401(api):
    _assert_401(_post(api, "not.a.jwt"))


def test_wrong_scheme_is_401(api):
    _assert_401(api.post(URL, BODY, format="json", HTTP_AUTHORIZATION="Basic Zm9vOmJhcg=="))


def test_alg_none_is_401(api):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    _assert_401(_post(api, f"{header}.{payload}."))


def test_hs256_signed_with_the_rs_public_key_is_401(api, settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = public_pem
    # The classic confusion: an HS256 token whose HMAC key is the server's RSA public key.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    _assert_401(_post(api, f"{header}.{payload}.{_b64(signature.digest())}"))
    # Even with HS256 also accepted, the HMAC key is the shared secret, never the public key.
    settings.JWT_ALGORITHMS = ["HS256", "RS256"]
    _assert_401(_post(api, f"{header}.{payload}.{_b64(signature.digest())}"))
    # The real RS256 token from the same key pair is accepted.
    good = jwt.encode(_claims(), key, algorithm="RS256")
    assert _post(api, good).status_code == 201


def test_wrong_audience_is_401(api, settings):
    settings.JWT_AUDIENCE = "budget-api"
    _assert_401(_post(api, _hs256(_claims(aud="other-api"))))
    assert _post(api, _hs256(_claims(aud="budget-api"))).status_code == 201


def test_wrong_issuer_is_401(api, settings):
    settings.JWT_ISSUER = "https://idp.example"
    _assert_401(_post(api, _hs256(_claims(iss="https://evil.example"))))
    assert _post(api, _hs256(_claims(iss="https://idp.example"))).status_code == 201


def test_expired_token_is_401(api):
    _assert_401(_post(api, _hs256(_claims(exp=int(time.time()) - 60))))


def test_token_without_exp_is_401(api):
    _assert_401(_post(api, _hs256(_claims(exp=None))))


def test_token_without_tenant_is_401(api):
    _assert_401(_post(api, _hs256(_claims(tenant_id=None))))


def test_token_signed_with_another_secret_is_401(api):
    _assert_401(_post(api, _hs256(_claims(), secret="another-secret-of-enough-length-0123456789")))


def test_api_key_works_and_revoked_key_is_401(api):
    key, plaintext = create_api_key(
        tenant_id="t-acme", name="ci", roles=["tenant_admin"], created_by="test"
    )
    assert len(plaintext) > 43 and key.secret_hash != plaintext
    assert api.post(URL, BODY, format="json", HTTP_X_API_KEY=plaintext).status_code == 201
    key.refresh_from_db()
    assert key.last_used_at is not None
    revoke_api_key(key_id=key.pk, revoked_by="test")
    _assert_401(api.post(URL, BODY, format="json", HTTP_X_API_KEY=plaintext), 1)
    _assert_401(api.post(URL, BODY, format="json", HTTP_X_API_KEY=plaintext[:-2] + "xx"), 1)
    _assert_401(api.post(URL, BODY, format="json", HTTP_X_API_KEY="bsk_nope"), 1)


def test_wrong_role_is_403(api):
    response = _post(api, _hs256(_claims(roles=["auditor"])))
    assert response.status_code == 403
    assert response.json()["error_code"] == "FORBIDDEN"
