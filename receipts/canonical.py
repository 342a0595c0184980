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


def decimal_string(value: Decimal) -> str:
    """0.3800000000 → "0.38", 1E+2 → "100", -0 → "0": the shortest exact text, no exponent."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite amount")
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", "0"} else text


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed in receipts")
    value = value.astimezone(UTC)
    spec = "microseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def to_jsonable(value: Any) -> Any:
    """A JSON value with only strings, safe integers, booleans, null, lists and objects."""
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
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_jsonable(v) for v in value)
    raise TypeError(f"{type(value).__name__} cannot go into a receipt")


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


def _plain(value: Any) -> bool:
    """Whether the standard library's C encoder writes `value` exactly as RFC 8785 does: only
    str, bool, None, safe integers, lists and dicts with str keys below U+D800. For those the
    two agree byte for byte: the same escapes (`\\"`, `\\\\`, `\\b \\f \\n \\r \\t`, other
    controls as lowercase `\\u00xx`, everything else as UTF-8), integers as digits, and key
    order by code point, which is UTF-16 order below U+D800. Floats, big integers and other
    keys go through `rfc8785` (tests/receipts/test_canonical_fast_path.py compares the two)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE_INT <= value <= _SAFE_INT
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (key and max(key) >= "\ud800") or not _plain(item):
                return False
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    return False


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (as built by `to_jsonable` or parsed from JSON).

    The common case (no floats, see `_plain`) is written by the C `json` encoder, several
    times faster than the pure-Python `rfc8785`, which still writes everything else and raises
    the same errors (a lone surrogate, an unsafe integer)."""
    # A plain value is its own `_for_jcs` (no Decimal to turn into a number): skip the copy.
    plain = _plain(obj)
    prepared = obj if plain else _for_jcs(obj)
    if plain or _plain(prepared):
        try:
            return json.dumps(
                prepared, ensure_ascii=False, sort_keys=True, separators=(",", ":")
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 raises its CanonicalizationError
    return rfc8785.dumps(prepared)


def sha256_prefixed(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot_hash(inputs: Any, decision: Any, result: Any) -> str:
    return sha256_prefixed(
        canonical_bytes({"inputs": inputs, "decision": decision, "result": result})
    )
