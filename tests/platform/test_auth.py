import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings

from budgeting_site.platform.auth import VerifiedTokens, verified_tokens
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


# --- verified tokens are kept per process; their time claims are checked on every use ---------


def test_a_kept_token_is_refused_once_it_expires(api):
    token = _hs256(_claims(exp=int(time.time()) + 60))
    assert _post(api, token).status_code == 201
    assert _post(api, token).status_code == 201  # the kept verification
    with time_machine.travel(time.time() + 70, tick=False):
        response = _post(api, token)
    _assert_401(response, 2)
    assert response.json()["message"] == "Token has expired"


def test_a_token_not_yet_valid_is_refused_until_it_is(api):
    now = int(time.time())
    token = _hs256(_claims(nbf=now + 60, exp=now + 600))
    _assert_401(_post(api, token))
    _assert_401(_post(api, token))
    with time_machine.travel(now + 61, tick=False):
        assert _post(api, token).status_code == 201
    # Back before nbf: the kept verification does not let it through either.
    with time_machine.travel(now + 30, tick=False):
        _assert_401(_post(api, token), 1)


def test_a_kept_token_is_verified_again_when_the_secret_changes(api, settings):
    token = _hs256(_claims())
    assert _post(api, token).status_code == 201
    settings.JWT_SECRET = "a-rotated-secret-of-enough-length-0123456789"
    _assert_401(_post(api, token), 1)


def test_a_kept_token_is_verified_again_after_its_maximum_age(api):
    now = time.time()
    token = _hs256(_claims(exp=int(now) + 3600))
    with time_machine.travel(now, tick=False):
        assert _post(api, token).status_code == 201
    kept = verified_tokens._entries[token]
    with time_machine.travel(now + VerifiedTokens.MAX_AGE_SECONDS + 1, tick=False):
        assert _post(api, token).status_code == 201
    assert verified_tokens._entries[token][3] > kept[3]  # verified anew, not taken as kept


def test_verified_tokens_are_bounded_oldest_first():
    kept = VerifiedTokens()
    kept.MAX_ENTRIES = 3
    tokens = [_hs256(_claims(sub=f"svc-{i}")) for i in range(5)]
    for token in tokens:
        assert kept.principal(token).principal.startswith("svc-")
    assert list(kept._entries) == tokens[2:]
