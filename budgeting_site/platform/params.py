"""Query-string values every app parses the same way."""

from datetime import UTC, datetime, time

from django.utils.dateparse import parse_date, parse_datetime

from budgeting_site.platform.errors import ValidationFailed


def parse_instant(value: str | None, name: str) -> datetime | None:
    """RFC 3339 instant; a bare date means 00:00Z. None when absent."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:  # a bare date: 00:00Z
            day = parse_date(value)
            parsed = datetime.combine(day, time(0), tzinfo=UTC) if day else None
        else:
            parsed = parse_datetime(value)
        # In UTC; an offset that pushes the instant past year 1 or 9999 is not an instant.
        if parsed is not None and parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationFailed(
            f"{name} must be an RFC 3339 instant with a time zone, or a date",
            details={name: ["must be an RFC 3339 instant (e.g. 2025-01-01T00:00:00Z) or a date"]},
        )
    return parsed
