"""Hostile bodies on every ratelimits write and on the check: a 4xx or a success, never a 500."""

from __future__ import annotations

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import BASE, NOON

pytestmark = pytest.mark.django_db

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["1e999999", "NaN", "-0", "9" * 40, "tenant", "user", "critical"]),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    [
        "resource_type", "limit_value", "time_window_seconds", "algorithm", "burst_capacity",
        "overrides", "mode", "fail_mode", "enabled", "version", "scope_type", "scope_id",
        "policy_name", "request_count", "priority", "resource_key", "scopes", "dry_run",
        "extra_requests", "duration_seconds", "reason",
    ]
)  # fmt: skip
OVERRIDES = st.dictionaries(
    st.sampled_from(
        [
            "priority_multipliers",
            "time_of_day_adjustments",
            "usage_pattern_analysis",
            "emergency_capacity",
        ]
    ),
    VALUE,
    max_size=3,
)


@time_machine.travel(NOON, tick=False)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.dictionaries(FIELDS, VALUE, max_size=6), overrides=OVERRIDES, valid_base=st.booleans()
)
def test_no_body_makes_a_policy_write_or_a_check_answer_500(
    rl_store, client_for, body, overrides, valid_base
):
    client = client_for(["tenant_admin", "system_architect", "service"])
    if valid_base:
        body = {
            "resource_type": "r",
            "limit_value": 5,
            "time_window_seconds": 60,
            **body,
            "overrides": overrides,
        }
    created = client.post(f"{BASE}/rate-limits", body, format="json")
    assert created.status_code < 500, (body, created.content)
    checked = client.post(f"{BASE}/rate-limits/check", body, format="json")
    assert checked.status_code < 500, (body, checked.content)
    if created.status_code != 201:
        return
    url = f"{BASE}/rate-limits/{created.json()['policy_id']}"
    for request in (
        {"resource_type": "r"},
        {"resource_type": "r", "priority": "critical", "request_count": 10**9},
    ):
        answer = client.post(f"{BASE}/rate-limits/check", request, format="json")
        assert answer.status_code == 200, (body, request, answer.content)
    assert client.put(url, body, format="json").status_code < 500
    assert client.post(f"{url}/emergency-capacity", body, format="json").status_code < 500
    assert client.delete(url).status_code == 204
