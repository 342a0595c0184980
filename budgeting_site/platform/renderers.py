"""JSON out, with Decimal rendered as an exact JSON number (SPEC: money is rendered as numbers,
never through float)."""

from decimal import Decimal, localcontext
from typing import Any

import simplejson
from rest_framework.renderers import JSONRenderer as _JSONRenderer


def plain_decimal(value: Decimal) -> Decimal:
    """0.3800000000 → 0.38 and 1E+2 → 100: the shortest exact text, never an exponent.

    Runs in a context wide enough for any stored amount, so nothing is rounded on the way out.
    """
    with localcontext() as ctx:
        ctx.prec = max(len(value.as_tuple().digits), 28)
        return Decimal(format(value.normalize(), "f"))


def _convert(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain_decimal(value) if value.is_finite() else None
    if isinstance(value, dict):
        return {k: _convert(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(v) for v in value]
    return value


def dumps(data: Any) -> str:
    return simplejson.dumps(
        _convert(data),
        use_decimal=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=_default,
    )


def _default(value: Any) -> Any:
    from rest_framework.utils.encoders import JSONEncoder

    return JSONEncoder().default(value)


class JSONRenderer(_JSONRenderer):
    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        if data is None:
            return b""
        return dumps(data).encode("utf-8")
