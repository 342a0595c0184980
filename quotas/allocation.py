"""Pool arithmetic for `POST /quotas/allocate/batch` (SPEC 5), free of Django.

Reserved amounts come off the pool first and those entities get nothing more; the rest is
split equally (fair_share), by tier shares and then equally within a tier (priority), or in
proportion to each entity's usage weight (dynamic). Every amount is a whole unit, rounded by
largest remainder, and the parts always add up to the pool exactly.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from budgeting_site.platform.money import largest_remainder

UNIT = Decimal(1)
#: the largest amount anywhere in a quota (a quadrillion units): allocated + burst and every
#: running total then stay far inside the columns' 18 integer digits.
MAX_AMOUNT = Decimal(10**15)
DEFAULT_TIER_SHARES: dict[int, Decimal] = {1: Decimal(50), 2: Decimal(30), 3: Decimal(20)}
DYNAMIC_HEADROOM = Decimal("1.2")
STRATEGIES = ("fair_share", "priority", "dynamic")


class SplitError(ValueError):
    """The pool cannot be split as asked; `field` names the input at fault."""

    def __init__(self, message: str, field: str = "entities") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Entity:
    allocation_type: str
    allocated_to_id: str
    tier: int | None = None
    reserved_amount: Decimal | None = None


def is_whole(amount: Decimal) -> bool:
    return amount == amount.to_integral_value()


def whole_units_up(amount: Decimal) -> Decimal:
    """`amount` rounded up to a whole unit, at least one unit and at most MAX_AMOUNT."""
    return min(max(amount.to_integral_value(rounding=ROUND_CEILING), UNIT), MAX_AMOUNT)


def split_pool(
    pool: Decimal,
    entities: Sequence[Entity],
    strategy: str,
    *,
    tier_shares: Mapping[int, Decimal] | None = None,
    usage: Mapping[int, Decimal | None] | None = None,
) -> list[Decimal]:
    """Each entity's share of `pool`, in input order.

    `usage` maps an entity's index to its average use per period over the look-back (None:
    no history), for the dynamic strategy. Raises SplitError when a whole-unit split that
    gives every entity at least one unit is impossible.
    """
    if strategy not in STRATEGIES:
        raise SplitError(f"strategy must be one of {', '.join(STRATEGIES)}", "strategy")
    if pool <= 0 or not is_whole(pool):
        raise SplitError("pool_amount must be a positive whole number of units", "pool_amount")
    if not entities:
        raise SplitError("at least one entity is needed")
    shares: list[Decimal | None] = [None] * len(entities)
    reserved_total = Decimal(0)
    for index, entity in enumerate(entities):
        if entity.reserved_amount is not None:
            shares[index] = entity.reserved_amount
            reserved_total += entity.reserved_amount
    if reserved_total > pool:
        raise SplitError(
            f"reserved amounts ({reserved_total}) exceed pool_amount ({pool})", "pool_amount"
        )
    rest = pool - reserved_total
    open_indices = [i for i, share in enumerate(shares) if share is None]
    if not open_indices:
        if rest:
            raise SplitError(
                f"reserved amounts leave {rest} of the pool to no entity; "
                "the shares must add up to pool_amount"
            )
        return [s for s in shares if s is not None]

    if strategy == "fair_share":
        parts = largest_remainder(rest, [1] * len(open_indices), UNIT)
    elif strategy == "priority":
        parts = _by_tiers(rest, [entities[i] for i in open_indices], tier_shares)
    else:
        parts = _by_usage(rest, [(usage or {}).get(i) for i in open_indices])
    for index, part in zip(open_indices, parts, strict=True):
        shares[index] = part

    result = [s for s in shares if s is not None]
    starved = [entities[i].allocated_to_id for i, s in enumerate(result) if s <= 0]
    if starved:
        raise SplitError(
            f"pool_amount is too small to give every entity a whole unit (none left for "
            f"{', '.join(starved[:5])})",
            "pool_amount",
        )
    assert sum(result, Decimal(0)) == pool
    return result


def _by_tiers(
    rest: Decimal, entities: Sequence[Entity], tier_shares: Mapping[int, Decimal] | None
) -> list[Decimal]:
    table = dict(tier_shares or DEFAULT_TIER_SHARES)
    members: dict[int, list[int]] = {}
    for position, entity in enumerate(entities):
        if entity.tier is None:
            raise SplitError(f"entity {entity.allocated_to_id} needs a tier for priority")
        if entity.tier not in table:
            raise SplitError(f"tier {entity.tier} of entity {entity.allocated_to_id} has no share")
        members.setdefault(entity.tier, []).append(position)
    # An empty tier's share is spread over the others in proportion to their own shares.
    tiers = sorted(members)
    weights = [table[t] for t in tiers]
    if sum(weights, Decimal(0)) <= 0:
        raise SplitError("the tiers in use have no share of the pool", "tier_shares")
    tier_amounts = largest_remainder(rest, weights, UNIT)
    parts = [Decimal(0)] * len(entities)
    for tier, amount in zip(tiers, tier_amounts, strict=True):
        positions = members[tier]
        for position, part in zip(
            positions, largest_remainder(amount, [1] * len(positions), UNIT), strict=True
        ):
            parts[position] = part
    return parts


def _by_usage(rest: Decimal, usage: Sequence[Decimal | None]) -> list[Decimal]:
    # 1.2 * average use is an entity's need with headroom. An entity without history is given
    # the mean need of those with history; nobody with any use: an equal split. A quota cannot
    # be zero, so an entity whose proportional share is under one unit gets exactly one and
    # the rest is split again over the others (water-filling), until nobody is under one.
    needs = [DYNAMIC_HEADROOM * u if u is not None else None for u in usage]
    known = [n for n in needs if n is not None]
    if not any(n > 0 for n in known):
        return largest_remainder(rest, [1] * len(usage), UNIT)
    mean = sum(known, Decimal(0)) / len(known)
    weights = [n if n is not None else mean for n in needs]
    parts = [Decimal(0)] * len(weights)
    active = list(range(len(weights)))
    left = rest
    while True:
        if left < len(active):
            return parts  # too small: the caller reports the starved entities
        total = sum((weights[i] for i in active), Decimal(0))
        below = [i for i in active if left * weights[i] < total]  # share under one unit
        if not below:
            split = largest_remainder(left, [weights[i] for i in active], UNIT)
            for i, part in zip(active, split, strict=True):
                parts[i] = part
            return parts
        for i in below:
            parts[i] = UNIT
        active = [i for i in active if i not in below]
        left -= UNIT * len(below)
