"""`canonical_bytes` writes plain JSON values with the C `json` encoder: the bytes must be the
ones `rfc8785` writes, for every value, or the same error."""

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.canonical import _c_encoded, _for_jcs, canonical_bytes, to_jsonable

SAFE = 2**53 - 1

#: Text that reaches the corners: controls, quotes, backslashes, DEL, the BMP's private use
#: and specials (U+E000..U+FFFF sort differently in UTF-16), astral characters.
corner_chars = st.sampled_from(
    ["\x00", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "\ue000", "\uffff", "\U0001f600", "é"]
)
text = st.text(st.one_of(st.characters(codec="utf-8"), corner_chars), max_size=12)
ints = st.one_of(st.integers(-SAFE, SAFE), st.integers(), st.sampled_from([SAFE, -SAFE]))
scalars = st.one_of(st.none(), st.booleans(), ints, text, st.floats(allow_nan=False))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(text, inner, max_size=5)),
    max_leaves=30,
)


def reference(value):
    try:
        return rfc8785.dumps(_for_jcs(value))
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        return type(exc)


def ours(value):
    try:
        return canonical_bytes(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(values)
def test_same_bytes_or_same_error_as_rfc8785(value):
    assert ours(value) == reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code point order
        {"b": 1, "a": [1, 2, {"d": None, "c": True}]},
        "\ud800",  # a lone surrogate: an error either way
        2**53,  # outside the safe range: an error either way
        [1.5, 1e21, 1e-7],
        {"x": 'line\nbreak \x01 "quoted" \\ \u2028'},
    ],
)
def test_corners(value):
    assert ours(value) == reference(value)


def test_a_receipt_shaped_value_takes_the_fast_path_and_matches(monkeypatch):
    from datetime import UTC, datetime
    from decimal import Decimal

    value = to_jsonable(
        {
            "inputs": {"estimated_cost": Decimal("0.38"), "operation_context": {"p": "ü"}},
            "result": {"allowed": True, "remaining": Decimal("1E+2"), "n": 3},
            "at": datetime(2024, 2, 29, 12, 0, 0, 5, tzinfo=UTC),
        }
    )
    expected = rfc8785.dumps(value)

    def slow_path(_value):
        raise AssertionError("a plain value went through rfc8785")

    monkeypatch.setattr("receipts.canonical.rfc8785.dumps", slow_path)
    assert canonical_bytes(value) == expected
    assert json.loads(expected) == value


#: What the service signs: objects with any unicode keys, strings, safe integers, decimals
#: (to_jsonable makes them decimal strings), booleans and null, nested.
service_text = st.text(st.one_of(st.characters(codec="utf-8"), corner_chars, st.just("\udc00")))
service_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-SAFE, SAFE),
        service_text,
        st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(service_text, inner, max_size=5)
    ),
    max_leaves=25,
)


def high_or_surrogate(value):
    """Whether a key has a code point from U+D800 on, or any text a lone surrogate: the
    cases the C encoder hands to rfc8785."""
    if isinstance(value, dict):
        return any(k and max(k) >= "\ud800" for k in value) or any(
            high_or_surrogate(v) for v in value.values()
        )
    if isinstance(value, list):
        return any(high_or_surrogate(v) for v in value)
    return isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value)


@settings(max_examples=1500, deadline=None)
@given(service_values)
def test_the_c_encoder_path_equals_rfc8785_on_what_the_service_signs(raw):
    value = to_jsonable(raw)
    fast = _c_encoded(value)
    # The fast path is taken for everything but keys past U+D7FF and lone surrogates...
    assert (fast is None) == high_or_surrogate(value)
    # ...where it writes rfc8785's bytes, and canonical_bytes does in every case.
    if fast is not None:
        assert fast == rfc8785.dumps(value)
    assert ours(value) == reference(value)
