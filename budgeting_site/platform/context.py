"""Per-request context that logs, errors and receipts read (correlation id, principal)."""

import re
import uuid
from contextvars import ContextVar

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_SAFE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_correlation_id(given: str | None = None) -> str:
    if given and _SAFE.match(given):
        return given
    return str(uuid.uuid4())


def current_correlation_id() -> str:
    value = correlation_id_var.get()
    if value is None:
        value = new_correlation_id()
        correlation_id_var.set(value)
    return value
