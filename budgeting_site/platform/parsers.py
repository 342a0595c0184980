"""JSON in, with money kept exact: numbers with a fraction parse as Decimal, never float."""

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            raw = stream.read() if stream is not None else b""
            if not raw:
                return {}
            return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
