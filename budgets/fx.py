"""Currency conversion through the costs app's FX table (SPEC 2.3, 4.3).

Imported lazily so the two apps load in either order. A missing rate raises
`costs.exceptions.FxRateMissing` (a 400 VALIDATION_ERROR naming the pair).
"""

from datetime import datetime
from decimal import Decimal

from budgets.utilization import money


def convert(
    amount: Decimal, from_currency: str, to_currency: str, at: datetime, *, tenant_id: str
) -> Decimal:
    if not from_currency or from_currency == to_currency:
        return amount
    from costs.selectors import convert as costs_convert

    return money(costs_convert(amount, from_currency, to_currency, at, tenant_id=tenant_id))


def missing_rate_error() -> type[Exception]:
    from costs.exceptions import FxRateMissing

    return FxRateMissing
