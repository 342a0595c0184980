"""The canonical form of receipts: RFC 8785 (JCS) over JSON values that survive a round trip.

Every non-integer number becomes a decimal string ("0.38", never 0.38 or 3.8E-1), so the
signed bytes are the same whether a verifier parses numbers as floats or as decimals; the same
goes for integers outside the IEEE-754 safe range. UUIDs become strings and datetimes
RFC 3339 instants in UTC with `Z`.
"""

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import rfc8785

_SAFE_INT = 2**53 - 1
#: What `to_jsonable` returns unchanged, by exact type.
_AS_IS = frozenset({str, bool, type(None)})


def decimal_string(value: Decimal) -> str:
    """0.3800000000 → "0.38", 1E+2 → "100", -0 → "0": the shortest exact text, no exponent."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite amount")
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", "0"} else text


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed in receipts")
    # In UTC isoformat ends in "+00:00" and writes microseconds only when there are some.
    return value.astimezone(UTC).isoformat()[:-6] + "Z"


def to_jsonable(value: Any) -> Any:
    """A JSON value with only strings, safe integers, booleans, null, lists and objects."""
    convert = _BY_EXACT_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if isinstance(value, Decimal):
        return decimal_string(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return decimal_string(Decimal(repr(value)))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, Mapping):
        return _object(value)
    if isinstance(value, list | tuple):
        return _array(value)
    if isinstance(value, set | frozenset):
        return sorted(to_jsonable(v) for v in value)
    raise TypeError(f"{type(value).__name__} cannot go into a receipt")


# The values that come back as they are (most of them) skip the call.
def _object(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): v if type(v) in _AS_IS else to_jsonable(v) for k, v in value.items()}


def _array(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [v if type(v) in _AS_IS else to_jsonable(v) for v in value]


#: The common types by exact type, one lookup instead of the chain of checks (same results).
_BY_EXACT_TYPE: dict[type, Any] = {
    dict: _object,
    list: _array,
    tuple: _array,
    Decimal: decimal_string,
    uuid.UUID: str,
    datetime: rfc3339,
    date: date.isoformat,
}


def _for_jcs(value: Any) -> Any:
    """A value as parsed from JSON (possibly with Decimal numbers) → what rfc8785 accepts.

    Used when verifying an object a client sent: its numbers are canonicalised the way any
    JCS implementation would (ES6 number form), so a tampered number just fails to verify.
    """
    if isinstance(value, Decimal):
        as_int = int(value) if value == value.to_integral_value() else None
        if as_int is not None and -_SAFE_INT <= as_int <= _SAFE_INT:
            return as_int
        return float(value)
    if isinstance(value, dict):
        return {str(k): _for_jcs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_jcs(v) for v in value]
    return value


#: Containers the C encoder writes as RFC 8785 does (exact types, as every check below).
_NESTED = frozenset({dict, list, tuple})


def _c_encodable(value: Any) -> bool:
    """Whether the C `json` encoder writes `value` exactly as RFC 8785 does: it holds only
    str, safe integers, bool, None, lists, tuples and dicts whose keys are str below U+D800
    (exact types: a subclass, a float or anything else goes to `rfc8785`)."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        keys = "".join(value)
        if not keys.isascii() and max(keys) >= "\ud800":
            return False
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return _c_encodable([value])
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -_SAFE_INT <= item <= _SAFE_INT:
                return False
        elif kind not in _NESTED or not _c_encodable(item):
            return False
    return True


def _c_encoded(value: Any) -> bytes | None:
    """RFC 8785 bytes of `value` written by the C `json` encoder, or None where they might
    differ. On what `_c_encodable` lets through they agree byte for byte: the same escapes
    (`\\"`, `\\\\`, `\\b \\f \\n \\r \\t`, other controls as lowercase `\\u00xx`,
    everything else, U+2028/9 too, as UTF-8), integers as digits, and keys sorted by code
    point, which is UTF-16 order below U+D800 (tests/receipts/test_canonical_fast_path.py
    compares the two with hypothesis)."""
    if not _c_encodable(value):
        return None
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate in a string: rfc8785 raises its CanonicalizationError


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (as built by `to_jsonable` or parsed from JSON).

    The common case is written by the C `json` encoder (`_c_encoded`), several times faster
    than the pure-Python `rfc8785`, which still writes everything else (floats, big integers,
    keys from U+D800 on) and raises the same errors (a lone surrogate, an unsafe integer)."""
    data = _c_encoded(obj)
    if data is not None:
        return data
    prepared = _for_jcs(obj)
    return _c_encoded(prepared) or rfc8785.dumps(prepared)


def sha256_prefixed(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot_hash(inputs: Any, decision: Any, result: Any) -> str:
    return sha256_prefixed(
        canonical_bytes({"inputs": inputs, "decision": decision, "result": result})
    )
