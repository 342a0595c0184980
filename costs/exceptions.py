"""The costs app's domain errors."""

from budgeting_site.platform.errors import Conflict, NotFound, ValidationFailed


class CostRecordNotFound(NotFound):
    default_message = "Cost record not found"


class FxRateMissing(ValidationFailed):
    """No FX rate is in effect for a currency pair at the time asked."""

    default_message = "No FX rate for this currency pair"

    def __init__(self, from_currency: str, to_currency: str, at: object = None) -> None:
        pair = f"{from_currency}/{to_currency}"
        when = f" at {at:%Y-%m-%dT%H:%M:%SZ}" if hasattr(at, "strftime") else ""
        super().__init__(
            f"No FX rate for {pair}{when}",
            details={
                "currency_pair": [pair],
                "from_currency": from_currency,
                "to_currency": to_currency,
            },
        )
        self.from_currency = from_currency
        self.to_currency = to_currency


class UnitPriceMissing(ValidationFailed):
    """cost_amount was omitted and no unit price exists for the resource type."""

    default_message = "No unit price for this resource type"


class RecordNotReversible(Conflict):
    default_message = "This record cannot be reversed"


class AllocationInvalid(ValidationFailed):
    pass
