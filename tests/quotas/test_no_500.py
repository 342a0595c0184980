"""No input, however malformed, makes a quotas endpoint answer 500."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.quotas.conftest import BASE

pytestmark = pytest.mark.django_db

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "2025-03-01",
            "2025-03-01T00:00:00Z",
            "0",
            "-1",
            "1e999",
            "NaN",
            "tier1",
            "user",
            "tenant",
            "t-acme",
            "dynamic",
            "reserved",
            "fair_share",
            "priority",
            "\u0000",
            "x" * 200,
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "resource_type",
    "allocated_amount",
    "allocation_type",
    "allocated_to_id",
    "strategy",
    "max_burst_amount",
    "period_start",
    "period_end",
    "auto_renew",
    "renewal_strategy",
    "amount",
    "dry_run",
    "operation_type",
    "resource_id",
    "pool_amount",
    "entities",
    "allocations",
    "tier_shares",
    "version",
    "idempotency_key",
    "tier",
    "reserved_amount",
]
bodies = st.one_of(values, st.dictionaries(st.sampled_from(FIELDS), values, max_size=8))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    target=st.sampled_from(
        ["/quotas/allocate", "/quotas/allocate/batch", "/quotas/consume", "/quotas/check"]
    ),
)
def test_posts_never_answer_500(admin, body, target):
    response = admin.post(f"{BASE}{target}", data=json.dumps(body), content_type="application/json")

    assert response.status_code < 500, response.content


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, method=st.sampled_from(["patch", "put"]))
def test_updates_never_answer_500(admin, body, method):
    created = admin.post(
        f"{BASE}/quotas/allocate",
        data=json.dumps(
            {"resource_type": "fuzz", "allocated_amount": 5, "period_start": "2025-01-01"}
        ),
        content_type="application/json",
    )
    quota_id = created.json().get("quota_id") or "00000000-0000-0000-0000-000000000000"

    response = getattr(admin, method)(
        f"{BASE}/quotas/{quota_id}", data=json.dumps(body), content_type="application/json"
    )

    assert response.status_code < 500, response.content


@pytest.mark.parametrize(
    "raw",
    [b'{"resource_type": "\\ud800", "allocated_amount": 1}', b"\xff\xfe", b"[]", b"null", b'"x"'],
)
def test_odd_bytes_never_answer_500(admin, raw):
    for target in ("/quotas/allocate", "/quotas/allocate/batch", "/quotas/consume"):
        response = admin.post(f"{BASE}{target}", data=raw, content_type="application/json")
        assert response.status_code < 500, (target, response.content)
