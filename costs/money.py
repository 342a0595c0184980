"""Money rounding for costs: minor units, exact splits and rounded parts that sum exactly."""

from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal, localcontext

from budgeting_site.platform.money import (
    WIDE_PRECISION,
    allocate_money,
    largest_remainder,
    minor_units,
    quantum,
    round_money,
)

__all__ = [
    "allocate_money",
    "largest_remainder",
    "minor_units",
    "quantum",
    "round_money",
    "round_parts",
]


def round_parts(values: Sequence[Decimal], currency: str) -> tuple[Decimal, list[Decimal]]:
    """Round exact `values` to the minor unit of `currency` so that they add up exactly to
    their rounded (half-even) sum: each is rounded down and the quanta left over go to the
    largest remainders (ties: earlier position). Returns (rounded total, rounded parts)."""
    q = quantum(currency)
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        total = sum(values, Decimal(0))
        rounded_total = round_money(total, currency)
        floors = [(v / q).to_integral_value(rounding=ROUND_FLOOR) for v in values]
        remainders = [v / q - f for v, f in zip(values, floors, strict=True)]
        left = int((rounded_total / q) - sum(floors, Decimal(0)))
        order = sorted(range(len(values)), key=lambda i: (-remainders[i], i))
        units = list(floors)
        for i in order[:left]:
            units[i] += 1
        return rounded_total, [(u * q).quantize(q) for u in units]
