"""Page-number pagination (SPEC 1.4) with the flat `{<items>, pagination}` answer."""

import math
from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.request import Request

from budgeting_site.platform.errors import ValidationFailed

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationFailed(
            f"{name} must be an integer", details={name: ["must be an integer"]}
        ) from exc
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high else f"at least {low}"
        raise ValidationFailed(f"{name} must be {bounds}", details={name: [f"must be {bounds}"]})
    return value


def page_params(request: Request) -> tuple[int, int]:
    page = _int_param(request, "page", 1, 1, None)
    page_size = _int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return page, page_size


def paginate(
    request: Request,
    items: QuerySet[Any] | Sequence[Any],
    items_key: str,
    render: Callable[[Sequence[Any]], list[Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    page, page_size = page_params(request)
    total = items.count() if isinstance(items, QuerySet) else len(items)
    start = (page - 1) * page_size
    # A page past the end is empty without asking the database for an absurd OFFSET.
    window = list(items[start : start + page_size]) if start < total else []
    return {
        items_key: render(window),
        "pagination": {
            "page": page,
            "page_size": page_size,
            "total_count": total,
            "total_pages": math.ceil(total / page_size) if total else 0,
        },
        **(extra or {}),
    }
