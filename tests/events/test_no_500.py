"""No input, however malformed, makes a subscriptions, alerts or receipts endpoint answer 500:
bodies and query strings from hypothesis."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

BASE = "/budget/v1"
ODD = [
    "2025-03-01",
    "2025-03-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2025-01-01T00:00:00+99:00",
    "1e999",
    "NaN",
    "\u0000",
    "x" * 300,
    "quota_exhausted",
    "https://hooks.example.com/x",
    "http://127.1/x",
    "http://[::1/x",
    "https://a..b/x",
    "true",
    "-1",
    "0",
    "WyIyMDI1LTAxLTAxVDAwOjAwOjAwWiIsIngiXQ",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(ODD),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["event_types", "webhook_url", "filters", "enabled", "comment", "signature", "kid"]
bodies = st.one_of(values, st.dictionaries(st.sampled_from(FIELDS), values, max_size=5))
PARAMS = [
    "start_time",
    "end_time",
    "status",
    "severity",
    "alert_type",
    "gate_id",
    "decision",
    "cursor",
    "page",
    "page_size",
    "event_type",
    "enabled",
]
queries = st.dictionaries(
    st.sampled_from(PARAMS), st.one_of(st.text(max_size=30), st.sampled_from(ODD)), max_size=4
)
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def admin(api, auth):
    return auth(api, "t-acme", ["tenant_admin"])


@FUZZ
@given(
    body=bodies,
    target=st.sampled_from(
        [
            ("post", "/event-subscriptions"),
            ("put", "/event-subscriptions/{sub}"),
            ("patch", "/event-subscriptions/{sub}"),
            ("post", "/alerts/{alert}/acknowledge"),
            ("post", "/receipts/verify"),
        ]
    ),
)
def test_bodies_never_answer_500(admin, body, target):
    from events.services import create_subscription, raise_alert
    from tests.events.helpers import ACTOR

    sub, _ = create_subscription(
        tenant_id="t-acme",
        event_types=["quota_exhausted"],
        webhook_url="https://hooks.example.com/x",
        actor=ACTOR,
    )
    alert = raise_alert(tenant_id="t-acme", alert_type="renewal_failed", severity="info", title="x")
    method, path = target
    url = BASE + path.format(sub=sub.pk, alert=alert.pk)

    response = getattr(admin, method)(url, data=json.dumps(body), content_type="application/json")

    assert response.status_code < 500, response.content


@FUZZ
@given(
    query=queries,
    path=st.sampled_from(
        ["/alerts", "/receipts", "/event-subscriptions", "/event-subscriptions/{sub}/deliveries"]
    ),
)
def test_query_strings_never_answer_500(admin, query, path):
    from events.services import create_subscription
    from tests.events.helpers import ACTOR

    sub, _ = create_subscription(
        tenant_id="t-acme",
        event_types=["quota_exhausted"],
        webhook_url="https://hooks.example.com/x",
        actor=ACTOR,
    )

    response = admin.get(BASE + path.format(sub=sub.pk), query)

    assert response.status_code < 500, response.content
