"""Money helpers every app may use: ISO 4217 minor units and exact splitting.

SPEC: where money is rounded it is rounded to the currency's ISO 4217 minor unit, half-even,
with largest remainder so that the parts add up to the whole exactly.
"""

from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

#: ISO 4217 currencies whose minor unit is not 2 (everything else: 2).
_MINOR_UNITS: dict[str, int] = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four decimals
    "CLF": 4, "UYW": 4,
}  # fmt: skip

#: Exact arithmetic for intermediate products (28-digit amounts x 20-digit rates fit easily).
WIDE_PRECISION = 120


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency` (USD 2, JPY 0, BHD 3); unknown codes: 2."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    """The smallest amount of `currency`: Decimal('0.01') for USD, Decimal('1') for JPY."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-even to the minor unit of `currency`."""
    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        return amount.quantize(quantum(currency), rounding=ROUND_HALF_EVEN)


def largest_remainder(
    total: Decimal, weights: Sequence[Decimal | int], quantum: Decimal
) -> list[Decimal]:
    """Split `total` in proportion to `weights` so that the parts add up to `total` exactly.

    Each part is its exact share rounded down to a multiple of `quantum`; the quanta left over
    go one each to the parts with the largest remainders. Ties go first to parts whose rounded
    down value is an odd number of quanta (so the rounding is half-even), then by position.
    If `total` itself is not a multiple of `quantum`, the sub-quantum residue is added to the
    part that received the last whole quantum (or the largest-remainder part), so the sum is
    still exact. A negative total is split as its absolute value and negated.

    Raises ValueError if a weight is negative or no weight is positive.
    """
    if not weights:
        raise ValueError("weights must not be empty")
    dec_weights = [Decimal(w) for w in weights]
    if any(w < 0 for w in dec_weights):
        raise ValueError("weights must not be negative")
    weight_sum = sum(dec_weights, Decimal(0))
    if weight_sum <= 0:
        raise ValueError("at least one weight must be positive")
    if quantum <= 0:
        raise ValueError("quantum must be positive")
    total = Decimal(total)
    if total < 0:
        return [-p for p in largest_remainder(-total, dec_weights, quantum)]

    with localcontext() as ctx:
        ctx.prec = WIDE_PRECISION
        total_units = total / quantum  # may have a fraction when total is off the grid
        whole_units = int(total_units.to_integral_value(rounding=ROUND_FLOOR))
        residue = total - whole_units * quantum
        exact = [Decimal(whole_units) * w / weight_sum for w in dec_weights]
        floors = [int(e.to_integral_value(rounding=ROUND_FLOOR)) for e in exact]
        remainders = [e - f for e, f in zip(exact, floors, strict=True)]
        left = whole_units - sum(floors)
        order = sorted(
            range(len(dec_weights)),
            key=lambda i: (-remainders[i], 0 if floors[i] % 2 else 1, i),
        )
        units = list(floors)
        for i in order[:left]:
            units[i] += 1
        parts = [Decimal(u) * quantum for u in units]
        if residue:
            target = order[left - 1] if left > 0 else order[0]
            parts[target] += residue
        return parts


def allocate_money(
    total: Decimal, weights: Sequence[Decimal | int], currency: str
) -> list[Decimal]:
    """`largest_remainder` on the minor unit of `currency`."""
    return largest_remainder(total, weights, quantum(currency))
