"""Receipts API (SPEC 6) and the issue's "what must be shown" for receipts."""

import base64
import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from budgeting_site.platform import clock
from receipts.models import Receipt
from receipts.services import emit_receipt, rotate_signing_key, system_actor

pytestmark = pytest.mark.django_db

URL = "/budget/v1/receipts"


def _error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error_code"] == code
    return response.json()


def _emit(tenant="t-acme", at=None, gate_id="budget-check", status="pass", **extra):
    kwargs = {
        "tenant_id": tenant,
        "gate_id": gate_id,
        "inputs": {"estimated_cost": Decimal("12.50"), "resource_type": "gpu", **extra},
        "result": {"allowed": status == "pass", "remaining_budget": Decimal("87.5")},
        "decision_status": status,
        "rationale": "test",
        "badges": ["soft_limit"],
        "policy_version_ids": ["b-1@2"],
        "actor": system_actor("tests"),
    }
    if at is None:
        return emit_receipt(**kwargs)
    with clock.override(lambda: at):
        return emit_receipt(**kwargs)


@pytest.fixture
def auditor(api, auth):
    return auth(api, "t-acme", ["auditor"])


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def independent_verify(receipt: dict, jwks: dict) -> bool:
    """Nothing but `cryptography` and `rfc8785`: find the key by kid, JCS the receipt
    without its signature, check Ed25519."""
    key = next((k for k in jwks["keys"] if k["kid"] == receipt.get("kid")), None)
    if key is None or (key["kty"], key["crv"], key["alg"]) != ("OKP", "Ed25519", "EdDSA"):
        return False
    public = Ed25519PublicKey.from_public_bytes(_b64url_decode(key["x"]))
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        public.verify(_b64url_decode(receipt["signature"]), rfc8785.dumps(unsigned))
    except InvalidSignature:
        return False
    return True


def test_signature_verifies_with_plain_cryptography_and_rfc8785_over_the_api_bytes(api, auditor):
    receipt = _emit()
    raw = auditor.get(f"{URL}/{receipt.receipt_id}").content
    body = json.loads(raw)  # plain json: floats would show up here, and there are none
    jwks = api.get(f"{URL}/keys").json()
    assert independent_verify(body, jwks)
    # Exactly the signed object: the signed fields plus signature, nothing added.
    assert set(body) == {
        "receipt_id", "tenant_id", "gate_id", "policy_version_ids", "snapshot_hash",
        "timestamp_utc", "timestamp_monotonic_ms", "inputs", "decision", "result", "actor",
        "degraded", "kid", "signature",
    }  # fmt: skip
    assert body["inputs"]["estimated_cost"] == "12.5"
    assert body["decision"] == {"status": "pass", "rationale": "test", "badges": ["soft_limit"]}


def _mutations(body: dict):
    """Each field changed in turn, nested ones too."""
    for name, value in body.items():
        if name == "signature":
            continue
        changed = copy.deepcopy(body)
        if isinstance(value, bool):
            changed[name] = not value
        elif isinstance(value, int):
            changed[name] = value + 1
        elif isinstance(value, str):
            changed[name] = value[:-1] + ("0" if value[-1] != "0" else "1")
        elif isinstance(value, list):
            changed[name] = [*value, "extra"]
        elif isinstance(value, dict):
            first = sorted(value)[0]
            inner = value[first]
            changed[name][first] = (
                inner + "x"
                if isinstance(inner, str)
                else [*inner, "x"]
                if isinstance(inner, list)
                else "x"
            )
        yield name, changed
    for name in [k for k in body if k != "signature"]:
        removed = copy.deepcopy(body)
        del removed[name]
        yield f"-{name}", removed
    added = copy.deepcopy(body)
    added["note"] = "added"
    yield "+note", added


def test_each_field_changed_in_turn_fails_verification(api, auditor):
    receipt = _emit()
    body = auditor.get(f"{URL}/{receipt.receipt_id}").json()
    jwks = api.get(f"{URL}/keys").json()
    assert auditor.post(f"{URL}/verify", body, format="json").json() == {
        "valid": True,
        "reason": "ok",
    }
    seen = set()
    for name, changed in _mutations(body):
        seen.add(name)
        assert not independent_verify(changed, jwks), name
        verdict = auditor.post(f"{URL}/verify", changed, format="json")
        assert verdict.status_code == 200, (name, verdict.content)
        assert verdict.json()["valid"] is False, name
    assert {
        "receipt_id",
        "snapshot_hash",
        "inputs",
        "decision",
        "result",
        "actor",
        "kid",
        "degraded",
        "timestamp_monotonic_ms",
        "policy_version_ids",
    } <= seen
    # The signature itself changed.
    forged = {
        **body,
        "signature": body["signature"][:-2] + ("AA" if body["signature"][-2:] != "AA" else "BB"),
    }
    assert auditor.post(f"{URL}/verify", forged, format="json").json()["valid"] is False


def test_verify_reasons(auditor):
    body = auditor.get(f"{URL}/{_emit().receipt_id}").json()

    def reason(payload):
        return auditor.post(f"{URL}/verify", payload, format="json").json()

    assert reason({**body, "kid": "nope"}) == {"valid": False, "reason": "unknown_kid"}
    assert reason({k: v for k, v in body.items() if k != "signature"}) == {
        "valid": False,
        "reason": "missing_signature",
    }
    assert reason({**body, "signature": "%%%"})["valid"] is False
    assert reason({**body, "inputs": {"x": 1.5}}) == {"valid": False, "reason": "bad_signature"}
    assert reason({**body, "inputs": {"x": 10**30}})["valid"] is False
    assert reason({})["valid"] is False
    _error(auditor.post(f"{URL}/verify", [1, 2], format="json"), 400, "VALIDATION_ERROR")
    _error(
        auditor.post(f"{URL}/verify", "{not json", content_type="application/json"),
        400,
        "VALIDATION_ERROR",
    )


def test_receipt_signed_before_a_rotation_still_verifies_after_it(api, auditor):
    before = _emit()
    old_kid = before.kid
    rotate_signing_key(actor=system_actor("tests"))
    after = _emit()
    assert after.kid != old_kid
    jwks = api.get(f"{URL}/keys").json()
    statuses = {k["kid"]: k["status"] for k in jwks["keys"]}
    assert statuses[old_kid] == "retired" and statuses[after.kid] == "active"
    for receipt in (before, after):
        body = auditor.get(f"{URL}/{receipt.receipt_id}").json()
        assert independent_verify(body, jwks)
        assert auditor.post(f"{URL}/verify", body, format="json").json()["valid"] is True


def test_keys_are_public_rfc8037_jwks_with_status_and_validity(api):
    _emit()
    response = api.get(f"{URL}/keys")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert {k: key[k] for k in ("kty", "crv", "alg", "use", "status")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "status": "active",
    }
    assert len(_b64url_decode(key["x"])) == 32
    assert "=" not in key["x"]
    assert key["valid_from"].endswith("Z") and key["valid_until"] is None
    assert "d" not in key


def test_list_filters_and_time_range(auditor):
    a = _emit(at=datetime(2025, 1, 1, 10, tzinfo=UTC))
    b = _emit(
        at=datetime(2025, 1, 2, 10, tzinfo=UTC), gate_id="quota-management", status="hard_block"
    )
    c = _emit(at=datetime(2025, 1, 3, 10, tzinfo=UTC), status="warn")
    _emit(tenant="t-globex")

    def ids(**params):
        body = auditor.get(URL, params).json()
        return [r["receipt_id"] for r in body["receipts"]]

    assert ids() == [str(c.pk), str(b.pk), str(a.pk)]
    assert ids(gate_id="quota-management") == [str(b.pk)]
    assert ids(decision="warn") == [str(c.pk)]
    assert ids(start_time="2025-01-02") == [str(c.pk), str(b.pk)]
    assert ids(start_time="2025-01-01T10:00:00Z", end_time="2025-01-02T10:00:00Z") == [str(a.pk)]
    assert auditor.get(URL).json()["pagination"] == {
        "page": 1,
        "page_size": 100,
        "total_count": 3,
        "total_pages": 1,
    }
    for bad in (
        {"gate_id": "nope"},
        {"decision": "allowed"},
        {"start_time": "soon"},
        {"page": 0},
        {"cursor": "garbage!"},
    ):
        _error(auditor.get(URL, bad), 400, "VALIDATION_ERROR")


def test_cursor_pages_through_everything_once_even_with_equal_timestamps(auditor):
    at = datetime(2025, 2, 1, tzinfo=UTC)
    made = [_emit(at=at) for _ in range(5)] + [_emit(at=datetime(2025, 2, 2, tzinfo=UTC))]
    seen, cursor, pages = [], "", 0
    while True:
        body = auditor.get(URL, {"cursor": cursor, "page_size": 2}).json()
        pages += 1
        seen.extend(r["receipt_id"] for r in body["receipts"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(str(r.pk) for r in made)
    assert len(seen) == len(set(seen))
    assert seen[0] == str(made[-1].pk)
    # New receipts do not shift a cursor walk already under way.
    first = auditor.get(URL, {"cursor": "", "page_size": 3}).json()
    _emit()
    second = auditor.get(URL, {"cursor": first["next_cursor"], "page_size": 3}).json()
    assert [r["receipt_id"] for r in second["receipts"]] == seen[3:6]


# --- permission matrix ----------------------------------------------------------------------


def test_anonymous_is_401_except_keys(api):
    receipt = _emit()
    _error(api.get(URL), 401, "UNAUTHORIZED")
    _error(api.get(f"{URL}/{receipt.pk}"), 401, "UNAUTHORIZED")
    _error(api.post(f"{URL}/verify", {}, format="json"), 401, "UNAUTHORIZED")
    assert api.get(f"{URL}/keys").status_code == 200


@pytest.mark.parametrize("role", ["tenant_admin", "financial_controller", "auditor"])
def test_read_roles_can_list_read_and_verify(api, auth, role):
    receipt = _emit()
    client = auth(api, "t-acme", [role])
    assert client.get(URL).status_code == 200
    body = client.get(f"{URL}/{receipt.pk}").json()
    assert client.post(f"{URL}/verify", body, format="json").json()["valid"] is True


@pytest.mark.parametrize("role", ["tenant_user", "service", "system_architect"])
def test_other_roles_are_403(api, auth, role):
    receipt = _emit()
    client = auth(api, "t-acme", [role])
    _error(client.get(URL), 403, "FORBIDDEN")
    _error(client.get(f"{URL}/{receipt.pk}"), 403, "FORBIDDEN")
    _error(client.post(f"{URL}/verify", receipt.as_dict(), format="json"), 403, "FORBIDDEN")


def test_other_tenant_is_404_by_id_and_403_for_a_foreign_tenant_id(api, auth):
    receipt = _emit()
    other = auth(api, "t-globex", ["tenant_admin"])
    _error(other.get(f"{URL}/{receipt.pk}"), 404, "NOT_FOUND")
    _error(other.get(URL, {"tenant_id": "t-acme"}), 403, "FORBIDDEN")
    # Verifying another tenant's receipt reveals nothing the public keys do not.
    verdict = other.post(f"{URL}/verify", receipt.as_dict(), format="json")
    assert verdict.status_code == 200 and verdict.json()["valid"] is True
    assert other.get(URL).json()["receipts"] == []


def test_unknown_and_malformed_ids(auditor):
    _error(auditor.get(f"{URL}/{uuid4()}"), 404, "NOT_FOUND")
    _error(auditor.get(f"{URL}/xyz"), 400, "VALIDATION_ERROR")


def test_no_write_methods(auditor, api, auth):
    receipt = _emit()
    admin = auth(api, "t-acme", ["tenant_admin"])
    for client in (auditor, admin):
        _error(client.delete(f"{URL}/{receipt.pk}"), 405, "METHOD_NOT_ALLOWED")
        _error(client.put(f"{URL}/{receipt.pk}", {}, format="json"), 405, "METHOD_NOT_ALLOWED")
        _error(client.post(URL, {}, format="json"), 405, "METHOD_NOT_ALLOWED")
    assert Receipt.objects.get().canonical == receipt.canonical


def test_hostile_verify_bodies_never_500(auditor):
    body = auditor.get(f"{URL}/{_emit().receipt_id}").json()
    deep: dict = {}
    cursor = deep
    for _ in range(200):
        cursor["a"] = {}
        cursor = cursor["a"]
    for payload in (
        {**body, "kid": "a\x00b"},
        {**body, "kid": 12},
        {**body, "signature": 12},
        {**body, "inputs": deep},
        {**body, "inputs": {"n": 1e308}},
        {**body, "kid": "x" * 500},
    ):
        response = auditor.post(f"{URL}/verify", payload, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["valid"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "9999-12-31T23:59:59-01:00"},
        {"end_time": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_an_offset_past_the_calendar_is_400_not_500(auditor, params):
    _emit()

    body = _error(auditor.get(URL, params), 400, "VALIDATION_ERROR")

    assert list(body["details"]) == list(params)


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_forged_cursor_past_the_calendar_is_400_not_500(auditor, at):
    _emit()
    forged = base64.urlsafe_b64encode(json.dumps([at, str(uuid4())]).encode()).decode()

    body = _error(auditor.get(URL, {"cursor": forged.rstrip("=")}), 400, "VALIDATION_ERROR")

    assert body["details"] == {"cursor": ["not a cursor from this API"]}
