"""SPEC 5 pool arithmetic: whole units, largest remainder, shares sum exactly to the pool."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotas.allocation import Entity, SplitError, split_pool


def E(name: str, tier: int | None = None, reserved: int | None = None) -> Entity:
    return Entity("project", name, tier, None if reserved is None else Decimal(reserved))


def test_fair_share_of_1000_over_three_with_one_reserved_100():
    shares = split_pool(Decimal(1000), [E("a", reserved=100), E("b"), E("c")], "fair_share")

    assert shares == [100, 450, 450]


def test_fair_share_remainder_goes_by_largest_remainder():
    assert split_pool(Decimal(1000), [E("a"), E("b"), E("c")], "fair_share") == [334, 333, 333]
    assert split_pool(Decimal(10), [E(x) for x in "abcd"], "fair_share") == [3, 3, 2, 2]


def test_priority_tiers_with_uneven_sizes_and_an_empty_tier():
    # tier 1: three entities, tier 2: none (its 30 % is spread over tiers 1 and 3 in
    # proportion 50:20), tier 3: two entities.  1000 * 50/70 = 714.28… → 714,
    # 1000 * 20/70 = 285.71… → 286 (the larger remainder takes the spare unit).
    entities = [E("a", 1), E("b", 1), E("c", 1), E("d", 3), E("e", 3)]

    shares = split_pool(Decimal(1000), entities, "priority")

    assert shares == [238, 238, 238, 143, 143]
    assert sum(shares[:3]) == 714
    assert sum(shares[3:]) == 286
    assert sum(shares) == 1000


def test_priority_with_every_tier_filled_and_a_reserved_entity():
    # 1000 - 100 reserved = 900 → tiers 450 / 270 / 180; tier 1 over two, tier 2 over three.
    entities = [
        E("a", 1),
        E("b", 1),
        E("c", 2),
        E("d", 2),
        E("e", 2),
        E("f", 3),
        E("r", reserved=100),
    ]

    shares = split_pool(Decimal(1000), entities, "priority")

    assert shares == [225, 225, 90, 90, 90, 180, 100]


def test_priority_custom_tier_shares():
    shares = split_pool(
        Decimal(100),
        [E("a", 1), E("b", 2)],
        "priority",
        tier_shares={1: Decimal(3), 2: Decimal(1)},
    )

    assert shares == [75, 25]


def test_dynamic_is_proportional_to_average_use():
    usage = {0: Decimal(100), 1: Decimal(300), 2: Decimal(600)}

    shares = split_pool(Decimal(500), [E("a"), E("b"), E("c")], "dynamic", usage=usage)

    assert shares == [50, 150, 300]


def test_dynamic_entity_without_history_gets_the_mean_need():
    # needs 1.2 * (100, 200) = 120, 240; the newcomer is given the mean 180 → 120:240:180.
    usage = {0: Decimal(100), 1: Decimal(200), 2: None}

    shares = split_pool(Decimal(1000), [E("a"), E("b"), E("new")], "dynamic", usage=usage)

    # 222.2…, 444.4…, 333.3…: the spare unit goes to the largest remainder (.44…)
    assert shares == [222, 445, 333]
    assert sum(shares) == 1000


def test_dynamic_idle_entity_still_gets_one_unit():
    usage = {0: Decimal(0), 1: Decimal(10)}

    assert split_pool(Decimal(100), [E("idle"), E("busy")], "dynamic", usage=usage) == [1, 99]


def test_dynamic_tiny_user_is_lifted_to_one_unit_and_the_rest_resplit():
    usage = {0: Decimal(1), 1: Decimal(1_000_000), 2: Decimal(3_000_000)}

    shares = split_pool(Decimal(21), [E("tiny"), E("b"), E("c")], "dynamic", usage=usage)

    assert shares == [1, 5, 15]


def test_dynamic_without_any_history_splits_equally():
    assert split_pool(Decimal(9), [E("a"), E("b"), E("c")], "dynamic", usage={}) == [3, 3, 3]


@pytest.mark.parametrize(
    ("pool", "entities", "field"),
    [
        (Decimal(100), [E("a", reserved=150)], "pool_amount"),
        (Decimal(100), [E("a", reserved=50)], "entities"),  # 50 left to nobody
        (Decimal(2), [E("a"), E("b"), E("c")], "pool_amount"),  # someone would get 0
        (Decimal("10.5"), [E("a")], "pool_amount"),
        (Decimal(10), [E("a", reserved=10), E("b")], "pool_amount"),
    ],
)
def test_impossible_splits_are_refused(pool, entities, field):
    with pytest.raises(SplitError) as caught:
        split_pool(pool, entities, "fair_share")

    assert caught.value.field == field


def test_priority_entity_without_tier_is_refused():
    with pytest.raises(SplitError, match="needs a tier"):
        split_pool(Decimal(10), [E("a")], "priority")


@settings(max_examples=150, deadline=None)
@given(
    pool=st.integers(min_value=1, max_value=10**12),
    tiers=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=30),
    strategy=st.sampled_from(["fair_share", "priority", "dynamic"]),
    usage=st.lists(st.one_of(st.none(), st.integers(0, 10**6)), min_size=30, max_size=30),
)
def test_shares_are_whole_and_always_sum_to_the_pool(pool, tiers, strategy, usage):
    entities = [E(f"e{i}", tier) for i, tier in enumerate(tiers)]
    use = {i: None if usage[i] is None else Decimal(usage[i]) for i in range(len(tiers))}
    try:
        shares = split_pool(Decimal(pool), entities, strategy, usage=use)
    except SplitError:
        # fair share and dynamic starve only a pool smaller than the entity count; priority
        # also when a tier's share is under one unit per member.
        assert strategy == "priority" or pool < len(entities)
        return
    assert sum(shares) == pool
    assert all(s >= 1 and s == s.to_integral_value() for s in shares)
