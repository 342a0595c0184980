"""Offline pieces: receipt verification with a key cache, profile resolution, bulk keys and
the split of a refused batch."""

import base64
import hashlib
import json
import os

import httpx
import pytest
import rfc8785
from budgeting_client import BudgetClient, ReceiptVerifier, bulk, canonical_bytes, snapshot_hash
from budgeting_client.config import ConfigError, resolve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(private: Ed25519PrivateKey, kid: str, status: str = "active") -> dict:
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw),
        "kid": kid,
        "alg": "EdDSA",
        "status": status,
    }


def signed(private: Ed25519PrivateKey, kid: str, **overrides) -> dict:
    receipt = {
        "receipt_id": "6a1f4c36-1111-4222-8333-944455556666",
        "tenant_id": "t-acme",
        "gate_id": "cost-tracking",
        "policy_version_ids": [],
        "timestamp_utc": "2025-01-01T00:00:00.000000Z",
        "timestamp_monotonic_ms": 1735689600000,
        "inputs": {"cost_amount": "1.2500000000", "resource_type": "gpu"},
        "decision": {"status": "pass", "rationale": "recorded", "badges": []},
        "result": {"record_id": "r-1"},
        "actor": {"principal": "svc", "credential_id": None, "instance": "i-1"},
        "degraded": False,
        "kid": kid,
        **overrides,
    }
    receipt["snapshot_hash"] = (
        "sha256:"
        + hashlib.sha256(
            rfc8785.dumps({k: receipt[k] for k in ("inputs", "decision", "result")})
        ).hexdigest()
    )
    receipt["signature"] = b64url(private.sign(rfc8785.dumps(receipt)))
    return receipt


def test_a_signed_receipt_verifies_and_any_change_is_found():
    key = Ed25519PrivateKey.generate()
    verifier = ReceiptVerifier(keys={"keys": [jwk(key, "k1")]})
    receipt = signed(key, "k1")

    assert verifier.verify(receipt).reason == "ok"
    assert canonical_bytes(receipt) == rfc8785.dumps(
        {k: v for k, v in receipt.items() if k != "signature"}
    )
    assert snapshot_hash(receipt) == receipt["snapshot_hash"]

    tampered = json.loads(json.dumps(receipt))
    tampered["inputs"]["cost_amount"] = "0.0100000000"
    verdict = verifier.verify(tampered)
    assert (verdict.valid, verdict.reason) == (False, "bad_signature")

    unsigned = dict(receipt)
    del unsigned["signature"]
    assert verifier.verify(unsigned).reason == "missing_signature"


def test_a_receipt_signed_over_a_wrong_snapshot_hash_is_invalid():
    key = Ed25519PrivateKey.generate()
    receipt = signed(key, "k1")
    receipt["snapshot_hash"] = "sha256:" + "0" * 64
    receipt["signature"] = b64url(
        key.sign(rfc8785.dumps({k: v for k, v in receipt.items() if k != "signature"}))
    )
    verdict = ReceiptVerifier(keys={"keys": [jwk(key, "k1")]}).verify(receipt)
    assert verdict.reason == "snapshot_hash_mismatch"


def test_keys_are_cached_and_fetched_again_once_for_an_unknown_kid():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    published = {"keys": [jwk(old, "k-old")]}
    fetches = []

    def fetch():
        fetches.append(1)
        return json.loads(json.dumps(published))

    verifier = ReceiptVerifier(fetch_keys=fetch)
    assert verifier.verify(signed(old, "k-old")).valid
    assert verifier.verify(signed(old, "k-old")).valid
    assert len(fetches) == 1  # cached

    # the service rotates: the new kid is unknown to the cache, so the keys are fetched again
    published["keys"] = [jwk(new, "k-new"), jwk(old, "k-old", status="retired")]
    assert verifier.verify(signed(new, "k-new")).valid
    assert len(fetches) == 2
    assert verifier.verify(signed(old, "k-old")).valid  # retired keys keep verifying

    # a kid nobody publishes costs one more fetch, not one per receipt
    bogus = Ed25519PrivateKey.generate()
    for _ in range(5):
        assert verifier.verify(signed(bogus, "k-bogus")).reason == "unknown_kid"
    assert len(fetches) == 3


def test_client_verifier_uses_the_public_keys_endpoint():
    key = Ed25519PrivateKey.generate()
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"keys": [jwk(key, "k1")]})

    client = BudgetClient("http://b.test", token="t", transport=httpx.MockTransport(handler))
    assert client.verify_receipt(signed(key, "k1")).valid
    assert [r.url.path for r in seen] == ["/budget/v1/receipts/keys"]
    assert "Authorization" not in seen[0].headers


# --- profiles ------------------------------------------------------------------------------


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[default]\nurl = "http://default"\ntoken = "tok-default"\n\n'
        '[prod]\nurl = "https://prod"\napi_key = "key-prod"\ntimeout = 5\n'
    )
    os.chmod(path, 0o600)
    return path


def test_environment_beats_the_default_profile(profile_file):
    env = {"BUDGET_URL": "http://env", "BUDGET_TOKEN": "tok-env"}
    s = resolve(config=profile_file, env=env)
    assert (s.url, s.token, s.api_key) == ("http://env", "tok-env", None)
    s = resolve(config=profile_file, env={})
    assert (s.url, s.token, s.api_key) == ("http://default", "tok-default", None)


def test_an_explicit_profile_beats_the_environment_and_flags_beat_both(profile_file):
    env = {"BUDGET_URL": "http://env", "BUDGET_TOKEN": "tok-env"}
    s = resolve(config=profile_file, env=env, profile="prod")
    assert (s.url, s.token, s.api_key, s.timeout) == ("https://prod", None, "key-prod", 5.0)
    s = resolve(config=profile_file, env={**env, "BUDGET_PROFILE": "prod"}, token="tok-flag")
    assert (s.url, s.token, s.api_key) == ("https://prod", "tok-flag", None)


def test_a_missing_profile_or_url_is_a_config_error(profile_file, tmp_path):
    with pytest.raises(ConfigError, match="no profile"):
        resolve(config=profile_file, env={}, profile="staging")
    with pytest.raises(ConfigError, match="no service URL"):
        resolve(config=tmp_path / "absent.toml", env={})


# --- bulk ------------------------------------------------------------------------------------


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bulk_keys_are_stable_and_identical_lines_stay_distinct(tmp_path):
    text = (
        "resource_type,cost_amount,tag:team,idempotency_key\n"
        "gpu,1.50,ml,\n"
        "gpu,1.50,ml,\n"
        "cpu,0.10,,given-key\n"
        "cpu,not-a-number,,\n"
    )
    lines = bulk.read_lines(write(tmp_path, "a.csv", text), "csv")
    bulk.assign_keys(lines)
    keys = [line.record["idempotency_key"] for line in lines]
    assert [line.number for line in lines] == [2, 3, 4, 5]
    assert lines[0].record == {
        "resource_type": "gpu",
        "cost_amount": "1.50",
        "tags": {"team": "ml"},
        "idempotency_key": keys[0],
    }
    assert keys[0] != keys[1]  # two identical lines are two records
    assert keys[2] == "given-key"

    # appending a line and fixing one keeps every other key
    fixed = text.replace("not-a-number", "0.20") + "tpu,3,,\n"
    again = bulk.read_lines(write(tmp_path, "b.csv", fixed), "csv")
    bulk.assign_keys(again)
    assert [line.record["idempotency_key"] for line in again][:3] == keys[:3]
    # a namespace separates files whose lines carry no timestamp
    spaced = bulk.read_lines(write(tmp_path, "c.csv", text), "csv")
    bulk.assign_keys(spaced, "2025-01-02")
    assert spaced[0].record["idempotency_key"] != keys[0]


def test_jsonl_lines_that_do_not_parse_are_failed_without_being_sent(tmp_path):
    path = write(
        tmp_path, "x.jsonl", '{"resource_type": "gpu", "cost_amount": 0.1}\nnot json\n\n[1]\n'
    )
    lines = bulk.read_lines(path, "jsonl")
    assert [(line.number, line.error is None) for line in lines] == [
        (1, True),
        (2, False),
        (4, False),
    ]


def test_a_refused_batch_is_split_until_the_bad_line_is_found():
    sent = []

    def handler(request):
        records = json.loads(request.content)["records"]
        sent.append(len(records))
        if any(r["cost_amount"] == "bad" for r in records):
            return httpx.Response(
                400,
                json={
                    "error_code": "VALIDATION_ERROR",
                    "message": "invalid",
                    "correlation_id": "c",
                    "details": {"cost_amount": ["bad"]},
                    "retriable": False,
                },
            )
        return httpx.Response(
            202,
            json={
                "processed_count": len(records),
                "duplicate_count": 0,
                "failed_count": 0,
                "results": [
                    {"index": i, "status": "created", "idempotency_key": r["idempotency_key"]}
                    for i, r in enumerate(records)
                ],
            },
        )

    client = BudgetClient("http://b.test", token="t", transport=httpx.MockTransport(handler))
    lines = [
        bulk.Line(n, {"resource_type": "gpu", "cost_amount": "bad" if n == 6 else "1"})
        for n in range(1, 9)
    ]
    bulk.assign_keys(lines)
    summary = bulk.record_file(client, lines, batch_size=8)
    assert (summary.created, summary.duplicate, summary.failed) == (7, 0, 1)
    assert [(f.line, f.error_code) for f in summary.failures] == [(6, "VALIDATION_ERROR")]
    assert sent == [8, 4, 4, 2, 1, 1, 2]
