"""Query building every app's selectors share."""

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def filter_given(queryset: QuerySet[M], **lookups: Any) -> QuerySet[M]:
    """`queryset` filtered by each lookup whose value was given: a list filter left out of the
    query string (None or "") does not narrow the list."""
    return queryset.filter(**{k: v for k, v in lookups.items() if v is not None and v != ""})
