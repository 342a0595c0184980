"""Utilization and the throttle factor (SPEC 2.3), as exact Decimal arithmetic."""

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

RATIO_QUANTUM = Decimal("0.000001")
PERCENT_QUANTUM = Decimal("0.0001")
FACTOR_QUANTUM = Decimal("0.0001")
MONEY_QUANTUM = Decimal("1E-10")
ZERO = Decimal(0)
ONE = Decimal(1)
THROTTLE_FROM = Decimal("0.8")
THROTTLE_FLOOR = Decimal("0.1")


def ratio_of(used: Decimal, amount: Decimal) -> Decimal:
    """used / amount, not clamped, to 6 places."""
    if amount <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 60
        return (used / amount).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def clamped_ratio(used: Decimal, amount: Decimal) -> Decimal:
    return min(max(ratio_of(used, amount), ZERO), ONE)


def percent_of(used: Decimal, amount: Decimal) -> Decimal:
    """used / amount * 100, not clamped, to 4 places."""
    if amount <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 60
        return (used * 100 / amount).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN)


def throttle_factor_for(used: Decimal, amount: Decimal) -> Decimal | None:
    """From 80 % up to 100 % the factor falls linearly from 1.0 to 0.1, 0.1 beyond; None at
    or below 80 % (no throttling)."""
    if amount <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        utilization = used / amount
        if utilization <= THROTTLE_FROM:
            return None
        if utilization >= ONE:
            return THROTTLE_FLOOR.quantize(FACTOR_QUANTUM)
        factor = ONE - (utilization - THROTTLE_FROM) / (ONE - THROTTLE_FROM) * (
            ONE - THROTTLE_FLOOR
        )
        return factor.quantize(FACTOR_QUANTUM, rounding=ROUND_HALF_EVEN)


def money(value: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)
