"""A record's receipt digest is the sha256 of its RFC 8785 form: the receipts app's
canonical_bytes (the C encoder where it is byte-identical) must agree with the reference
rfc8785 implementation on every record shape (odd text, non-ASCII tag keys, nested context)."""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from costs import services
from receipts.canonical import to_jsonable

text = st.text(max_size=20)
amount = st.decimals(min_value=-(10**17), max_value=10**17, places=10, allow_nan=False)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    strings=st.lists(text, min_size=7, max_size=7),
    cost=amount,
    usage=st.none() | amount,
    tags=st.dictionaries(text.filter(bool), text, max_size=4),
    context=st.dictionaries(text, json_value, max_size=3),
    seconds=st.integers(0, 10**9),
    micros=st.integers(0, 999_999),
    counted=st.booleans(),
    reversed_=st.booleans(),
    links=st.lists(st.booleans(), min_size=3, max_size=3),
    reason=text,
)
def test_record_digest_is_the_sha256_of_rfc8785(
    strings, cost, usage, tags, context, seconds, micros, counted, reversed_, links, reason
):
    at = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    row = services.record_row(
        tenant_id=strings[0] or "t",
        idempotency_key=strings[1] or None,
        resource_type=strings[2] or "x",
        resource_id=strings[3],
        service_name=strings[4],
        region=strings[5],
        attributed_to_id=strings[6] or "t",
        cost_amount=cost,
        usage_quantity=usage,
        unit_price=D("0.0020000000"),
        tags=tags,
        operation_context=context,
        timestamp=at,
        recorded_at=at,
        receipt_id=uuid.uuid4(),
        counted=counted,
        reversed_by=uuid.uuid4() if reversed_ else None,
        reverses=uuid.uuid4() if links[0] else None,
        allocation_id=uuid.uuid4() if links[1] else None,
        reservation_id=uuid.uuid4() if links[2] else None,
        reversal_reason=reason,
        usage_unit=strings[5],
    )
    reference = rfc8785.dumps(to_jsonable(services.canonical_record(row)))
    assert services.record_digest(row) == "sha256:" + hashlib.sha256(reference).hexdigest()
