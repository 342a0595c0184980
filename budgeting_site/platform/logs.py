"""Structured JSON logs that always carry the correlation id."""

import logging

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from budgeting_site.platform.context import correlation_id_var


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = correlation_id_var.get()
        return True


class JsonFormatter(_JsonFormatter):
    pass
