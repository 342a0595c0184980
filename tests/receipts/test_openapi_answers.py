"""Every answer of the receipts API matches the response schema the code generates, and the
list's pagination has SPEC 1.4's shape in both modes."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from budgeting_site.platform import clock
from receipts.services import emit_receipt, rotate_signing_key, system_actor
from tests.events.schema import assert_documented

pytestmark = pytest.mark.django_db

URL = "/budget/v1/receipts"


def _emit(at: datetime, **extra):
    with clock.override(lambda: at):
        return emit_receipt(
            tenant_id="t-acme",
            gate_id="quota-management",
            inputs={"amount": Decimal("2.50"), **extra},
            result={"allowed": False, "quota_id": None},
            decision_status="hard_block",
            rationale="quota exhausted",
            badges=["QUOTA_EXHAUSTED"],
            policy_version_ids=["q-1@3"],
            actor=system_actor("tests"),
        )


@pytest.fixture
def auditor(api, auth):
    return auth(api, "t-acme", ["auditor"])


def test_list_detail_keys_and_verify_answers_match_the_schema(api, auditor):
    first = _emit(datetime(2025, 1, 1, tzinfo=UTC))
    rotate_signing_key(actor=system_actor("tests"))
    _emit(datetime(2025, 1, 2, 12, 30, 15, 250000, tzinfo=UTC), nested={"a": [1, "b"]})

    page = assert_documented(auditor.get(URL), URL, "get")
    assert page["pagination"] == {"page": 1, "page_size": 100, "total_count": 2, "total_pages": 1}
    assert "next_cursor" not in page
    detail = assert_documented(auditor.get(f"{URL}/{first.pk}"), f"{URL}/{{receipt_id}}", "get")
    keys = assert_documented(api.get(f"{URL}/keys"), f"{URL}/keys", "get")
    assert [k["status"] for k in keys["keys"]] == ["active", "retired"]
    verdict = auditor.post(f"{URL}/verify", detail, format="json")
    assert assert_documented(verdict, f"{URL}/verify", "post") == {"valid": True, "reason": "ok"}
    tampered = auditor.post(f"{URL}/verify", {**detail, "degraded": True}, format="json")
    assert assert_documented(tampered, f"{URL}/verify", "post")["valid"] is False


def test_cursor_mode_keeps_the_pagination_shape_without_counting(auditor):
    made = [_emit(datetime(2025, 1, day, tzinfo=UTC)) for day in (1, 2, 3)]

    first = assert_documented(auditor.get(URL, {"cursor": "", "page_size": 2}), URL, "get")
    assert first["pagination"] == {
        "page": None,
        "page_size": 2,
        "total_count": None,
        "total_pages": None,
    }
    assert first["next_cursor"]
    last = assert_documented(
        auditor.get(URL, {"cursor": first["next_cursor"], "page_size": 2}), URL, "get"
    )
    assert [r["receipt_id"] for r in last["receipts"]] == [str(made[0].pk)]
    assert last["next_cursor"] is None
