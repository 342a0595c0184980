"""Minor units, largest-remainder splits and rounded parts that add up exactly."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from budgeting_site.platform.money import allocate_money, largest_remainder, minor_units, quantum
from costs.money import round_parts


def test_minor_units_follow_iso_4217():
    assert (minor_units("USD"), minor_units("JPY"), minor_units("BHD")) == (2, 0, 3)
    assert quantum("EUR") == D("0.01")
    assert quantum("KWD") == D("0.001")
    assert quantum("KRW") == D("1")


def test_100_over_three_equal_parts_sums_to_the_cent():
    assert allocate_money(D("100.00"), [1, 1, 1], "USD") == [D("33.34"), D("33.33"), D("33.33")]


def test_100_by_weights_2_3_5():
    assert allocate_money(D("100.00"), [2, 3, 5], "USD") == [D("20.00"), D("30.00"), D("50.00")]


def test_awkward_amount_by_2_3_5():
    parts = allocate_money(D("100.01"), [2, 3, 5], "USD")
    assert parts == [D("20.00"), D("30.00"), D("50.01")]
    assert sum(parts) == D("100.01")


def test_ties_round_half_even():
    # 0.05 split in two: 0.025 each; the tie goes to the part that becomes even.
    assert largest_remainder(D("0.05"), [1, 1], D("0.01")) == [D("0.03"), D("0.02")]
    assert allocate_money(D("3"), [1, 1], "JPY") == [D("2"), D("1")]


def test_off_grid_total_keeps_its_residue():
    parts = allocate_money(D("100.005"), [1, 1, 1], "USD")
    assert sum(parts) == D("100.005")


def test_negative_total_is_split_like_its_absolute_value():
    assert allocate_money(D("-100.00"), [1, 1, 1], "USD") == [D("-33.34"), D("-33.33"), D("-33.33")]


@settings(max_examples=200, deadline=None)
@given(
    total=st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(
        lambda w: sum(w) > 0
    ),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_parts_always_sum_to_the_total(total, weights, currency):
    parts = allocate_money(total, weights, currency)
    assert sum(parts) == total
    q = quantum(currency)
    exact = [total * w / sum(weights) for w in weights]
    for part, share in zip(parts, exact, strict=True):
        assert abs(part - share) < 2 * q  # within one quantum (plus any off-grid residue)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.decimals(min_value=-(10**6), max_value=10**6, places=10, allow_nan=False), max_size=20
    ),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_rounded_parts_sum_to_the_rounded_total(values, currency):
    total, parts = round_parts(values, currency)
    assert sum(parts, D(0)) == total
    assert total == sum(values, D(0)).quantize(quantum(currency))
    for part, value in zip(parts, values, strict=True):
        assert abs(part - value) < quantum(currency)
