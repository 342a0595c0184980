"""FX rates and unit prices at an instant; `convert` for other apps."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from costs import services
from costs.exceptions import FxRateMissing
from costs.selectors import convert, unit_price_at

pytestmark = pytest.mark.django_db

JAN = datetime(2024, 1, 1, tzinfo=UTC)
FEB = datetime(2024, 2, 1, tzinfo=UTC)


def test_convert_uses_the_rate_in_effect_at_the_instant():
    services.set_fx_rate(
        base_currency="EUR", quote_currency="USD", rate=D("1.10"), effective_from=JAN
    )
    services.set_fx_rate(
        base_currency="EUR", quote_currency="USD", rate=D("1.20"), effective_from=FEB
    )
    assert convert(D("10"), "EUR", "USD", datetime(2024, 1, 31, 23, 59, tzinfo=UTC)) == D("11")
    assert convert(D("10"), "EUR", "USD", FEB) == D("12")
    assert convert(D("10"), "USD", "USD", JAN) == D("10")


def test_convert_derives_the_inverse_pair():
    services.set_fx_rate(
        base_currency="USD", quote_currency="JPY", rate=D("150"), effective_from=JAN
    )
    assert convert(D("300"), "JPY", "USD", FEB) == D("2.0000000000")


def test_missing_rate_is_a_400_naming_the_pair():
    with pytest.raises(FxRateMissing) as info:
        convert(D("1"), "GBP", "USD", JAN)
    assert info.value.status == 400
    assert info.value.error_code == "VALIDATION_ERROR"
    assert "GBP/USD" in info.value.message
    assert info.value.details["currency_pair"] == ["GBP/USD"]


def test_rate_before_its_effective_from_is_missing():
    services.set_fx_rate(
        base_currency="EUR", quote_currency="USD", rate=D("1.1"), effective_from=FEB
    )
    with pytest.raises(FxRateMissing):
        convert(D("1"), "EUR", "USD", JAN)


def test_a_tenants_own_rate_replaces_the_default():
    services.set_fx_rate(
        base_currency="EUR", quote_currency="USD", rate=D("1.1"), effective_from=JAN
    )
    services.set_fx_rate(
        base_currency="EUR",
        quote_currency="USD",
        rate=D("1.3"),
        effective_from=JAN,
        tenant_id="t-acme",
    )
    assert convert(D("10"), "EUR", "USD", FEB, tenant_id="t-acme") == D("13")
    assert convert(D("10"), "EUR", "USD", FEB, tenant_id="t-globex") == D("11")
    assert convert(D("10"), "EUR", "USD", FEB) == D("11")


def test_unit_price_lookup_prefers_tenant_and_exact_unit():
    services.set_unit_price(resource_type="gpu", unit_price=D("2"), effective_from=JAN)
    services.set_unit_price(
        resource_type="gpu", unit_price=D("3"), usage_unit="hour", effective_from=JAN
    )
    services.set_unit_price(
        resource_type="gpu", unit_price=D("5"), tenant_id="t-acme", effective_from=FEB
    )
    assert unit_price_at("t-globex", "gpu", "hour", FEB) == (D("3"), "USD")
    assert unit_price_at("t-globex", "gpu", "minute", FEB) == (D("2"), "USD")
    assert unit_price_at("t-acme", "gpu", "hour", FEB) == (D("5"), "USD")
    assert unit_price_at("t-acme", "gpu", "hour", JAN) == (D("3"), "USD")
    assert unit_price_at("t-acme", "tpu", "hour", FEB) is None
