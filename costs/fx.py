"""FX and unit-price lookups at an instant (the tables operators keep in the admin).

A rate row says 1 base = rate quote from `effective_from` on. For a pair, the row in effect
at `at` is the latest with `effective_from <= at` among both directions (an inverse row
gives 1/rate, fixed to 20 decimal places so that conversions stay exact sums). A tenant's own
rows for a pair replace the operator's defaults for that pair.
"""

from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.db.models import Q

from budgeting_site.platform.money import WIDE_PRECISION
from costs.exceptions import FxRateMissing
from costs.models import FxRate

STORAGE_QUANTUM = Decimal("1E-10")
INVERSE_QUANTUM = Decimal("1E-20")
ONE = Decimal(1)


def _inverse(rate: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return (ONE / rate).quantize(INVERSE_QUANTUM, rounding=ROUND_HALF_EVEN)


class FxTable:
    """The FX rates one tenant sees, loaded once per pair and kept for one request or job."""

    def __init__(self, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id or ""
        self._pairs: dict[tuple[str, str], tuple[list[datetime], list[Decimal]]] = {}

    def _load(self, base: str, quote: str) -> tuple[list[datetime], list[Decimal]]:
        key = (base, quote)
        if key in self._pairs:
            return self._pairs[key]
        rows = list(
            FxRate.objects.filter(
                Q(base_currency=base, quote_currency=quote)
                | Q(base_currency=quote, quote_currency=base),
                tenant_id__in={"", self.tenant_id},
            ).values_list("tenant_id", "base_currency", "effective_from", "rate")
        )
        if self.tenant_id and any(r[0] == self.tenant_id for r in rows):
            rows = [r for r in rows if r[0] == self.tenant_id]
        # Same instant in both directions: the direct row wins (sorted after the inverse).
        entries = sorted(
            (eff, 1 if b == base else 0, rate if b == base else _inverse(rate))
            for _, b, eff, rate in rows
        )
        times = [e[0] for e in entries]
        rates = [e[2] for e in entries]
        self._pairs[key] = (times, rates)
        return times, rates

    def rate(self, from_currency: str, to_currency: str, at: datetime) -> Decimal:
        """The multiplier in effect at `at`; 1 for the same currency; FxRateMissing if none."""
        if from_currency == to_currency:
            return ONE
        times, rates = self._load(from_currency, to_currency)
        i = bisect_right(times, at)
        if i == 0:
            raise FxRateMissing(from_currency, to_currency, at)
        return rates[i - 1]

    def changes_between(
        self, from_currency: str, to_currency: str, start: datetime, end: datetime
    ) -> bool:
        """True if a rate for the pair takes effect strictly inside (start, end)."""
        if from_currency == to_currency:
            return False
        times, _ = self._load(from_currency, to_currency)
        i = bisect_right(times, start)
        return i < len(times) and times[i] < end

    def preload(self, pairs: Iterable[tuple[str, str]]) -> None:
        for base, quote in pairs:
            if base != quote:
                self._load(base, quote)


def exact_convert(amount: Decimal, rate: Decimal) -> Decimal:
    """amount x rate without rounding (wide precision)."""
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return amount * rate


def to_storage(amount: Decimal) -> Decimal:
    """Rounded half-even to the 10 decimal places money is stored with."""
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return amount.quantize(STORAGE_QUANTUM, rounding=ROUND_HALF_EVEN)
