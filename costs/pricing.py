"""Unit prices at an instant, loaded once per resource type for a request or a batch."""

from bisect import bisect_right
from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from costs.models import UnitPrice


class PriceBook:
    """The unit prices one tenant sees. For a (resource type, unit) at `at`, the candidates
    are, in order: the tenant's rows for that unit, the tenant's rows for any unit, the
    default rows for that unit, the default rows for any unit; the first candidate list with
    a row in effect gives the price (its latest `effective_from <= at`)."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._by_type: dict[str, dict[tuple[str, str], tuple[list[datetime], list]]] = {}

    def _load(self, resource_type: str) -> dict[tuple[str, str], tuple[list[datetime], list]]:
        found = self._by_type.get(resource_type)
        if found is not None:
            return found
        groups: dict[tuple[str, str], list[tuple[datetime, Decimal, str]]] = {}
        rows = UnitPrice.objects.filter(
            Q(tenant_id=self.tenant_id) | Q(tenant_id=""), resource_type=resource_type
        ).values_list("tenant_id", "usage_unit", "effective_from", "unit_price", "currency")
        for tenant, unit, effective_from, price, currency in rows:
            groups.setdefault((tenant, unit), []).append((effective_from, price, currency))
        table = {}
        for key, entries in groups.items():
            entries.sort(key=lambda e: e[0])
            table[key] = ([e[0] for e in entries], [(e[1], e[2]) for e in entries])
        self._by_type[resource_type] = table
        return table

    def price_at(
        self, resource_type: str, usage_unit: str, at: datetime
    ) -> tuple[Decimal, str] | None:
        """(unit price, its currency) in effect at `at`, or None."""
        table = self._load(resource_type)
        for key in (
            (self.tenant_id, usage_unit),
            (self.tenant_id, ""),
            ("", usage_unit),
            ("", ""),
        ):
            entry = table.get(key)
            if entry is None:
                continue
            times, values = entry
            i = bisect_right(times, at)
            if i:
                return values[i - 1]
        return None
