"""Money: amounts in their currency's own minor units, exchange rates, and one way to show them.

Minor units (JPY 0, EUR 2, BHD 3) come from babel's currency data (CLDR), not from a table of
ours. An amount is accepted when it is exact in its currency's minor units and is then
normalised to them: EUR "2500" becomes 2500.00, JPY "9000.00" becomes 9000, JPY "9000.5" is
refused. `format_money` and `describe_price` are the one way every service, the CLI and the
console show money. Babel is asked only when no table of minor units is given: workflows pass
their snapshot's, so replay never depends on the installed babel.

A `Valuation` says what an amount is worth in the policy's base currency, rounded to be shown,
and which rate (and its date) said so. The approval tier is decided on the exact value
(`convert`), never on the rounded one: 909,091 JPY at 0.0055 is 5000.0005 EUR, shown as
5000.00 EUR and above a 5000 EUR limit.

Errors: MoneyError (an amount or a rate that cannot be used; the message says why).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Annotated

from babel.numbers import get_currency_precision, is_currency
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Amounts are refused from this size on, before any arithmetic, so every computation below can
# afford to be exact (a 10^18 order is a typo or an attack, whatever the currency).
AMOUNT_DIGITS_MAX = 18
_CODE = re.compile(r"^[A-Z]{3}$")


class MoneyError(ValueError):
    """An amount or a rate that cannot be used; the message says why."""


def is_currency_code(code: str) -> bool:
    """True for an ISO 4217 code that babel's currency data knows."""
    return bool(_CODE.match(code)) and is_currency(code)


def minor_units(currency: str) -> int:
    """Decimal places of `currency` (JPY 0, EUR 2, BHD 3), from babel's currency data."""
    return int(get_currency_precision(currency))


def _exact(*numbers: Decimal) -> Context:
    """A context precise enough that arithmetic on `numbers` is exact."""
    digits = sum(len(n.as_tuple().digits) + max(0, int(n.as_tuple().exponent)) for n in numbers)
    return Context(prec=digits + 2 * AMOUNT_DIGITS_MAX)


def in_minor_units(amount: Decimal, currency: str, places: int | None = None) -> Decimal:
    """`amount` with exactly the currency's decimal places; MoneyError if it needs more."""
    places = minor_units(currency) if places is None else places
    check_size(amount)
    normalised = amount.quantize(Decimal(1).scaleb(-places), context=_exact(amount))
    if normalised != amount:
        if places == 0:
            raise MoneyError(f"{currency} has no minor units: use a whole number (got {amount})")
        raise MoneyError(f"{currency} has {places} decimal places; got {amount}")
    return normalised


def check_size(amount: Decimal) -> None:
    """MoneyError for an amount no arithmetic here should be asked to handle."""
    if not amount.is_finite():
        raise MoneyError("must be a finite number")
    if amount.adjusted() >= AMOUNT_DIGITS_MAX:
        raise MoneyError(f"must be below 10^{AMOUNT_DIGITS_MAX}")


def round_half_up(amount: Decimal, places: int) -> Decimal:
    """`amount` rounded half-up to `places` decimals, exactly."""
    return amount.quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_exact(amount)
    )


def format_money(amount: Decimal, currency: str, places: int | None = None) -> str:
    """'2500.00 EUR', '9000 JPY', '12.345 BHD': the amount in its minor units, then the code.

    `places` are the currency's minor units as the policy has them (babel's when None). They
    only ever add zeros: an amount is never rounded to them, so one with more decimals (IQD
    1500000.875, accepted under a policy that gives IQD 3 places where babel gives 0) shows
    every digit it was accepted with. The one way money is shown: API answers, the CLI, the
    console and notifications.
    """
    try:
        check_size(amount)
    except MoneyError:
        return f"{amount} {currency}"
    places = minor_units(currency) if places is None else places
    shown = max(places, -int(amount.as_tuple().exponent))
    return f"{amount.quantize(Decimal(1).scaleb(-shown), context=_exact(amount)):f} {currency}"


def _plain_decimal(value: object) -> object:
    """'1E-2' and '0.010' both become Decimal('0.01'): rates are shown as configured, plainly."""
    if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return value
        if number.is_finite() and number > 0:
            text = f"{number:f}"
            return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)
    return value


RateValue = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal),
    Field(gt=0, allow_inf_nan=False, max_digits=AMOUNT_DIGITS_MAX),
]


class Rate(BaseModel):
    """An exchange rate: how many units of the base currency one unit of a currency is worth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: RateValue
    as_of: date


class Valuation(BaseModel):
    """What an amount is worth in the base currency, and the rate (and its date) that said so.

    `rate_as_of` is None when the amount is in the base currency itself (rate 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_currency: str
    base_amount: Decimal
    rate: Decimal
    rate_as_of: date | None = None

    def describe(self, currency: str, places: Callable[[str], int] = minor_units) -> str:
        """'1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20', or '' for the base currency.

        `places` gives a currency's minor units (babel's by default)."""
        if currency == self.base_currency:
            return ""
        as_of = f" as of {self.rate_as_of.isoformat()}" if self.rate_as_of else ""
        return (
            f"{format_money(self.base_amount, self.base_currency, places(self.base_currency))}; "
            f"1 {currency} = {self.rate:f} {self.base_currency}{as_of}"
        )


def convert(amount: Decimal, currency: str, base: str, rate: Rate | None) -> Decimal:
    """`amount` in the base currency, exactly (amount x rate, unrounded): tiers compare this."""
    check_size(amount)
    if currency == base:
        return amount
    if rate is None:
        raise MoneyError(f"no exchange rate from {currency} to {base}")
    return _exact(amount, rate.rate).multiply(amount, rate.rate)


def value_in(
    amount: Decimal, currency: str, base: str, rate: Rate | None, base_places: int | None = None
) -> Valuation:
    """`amount` in the base currency, rounded half-up to the base's minor units to be shown.

    Half-up is how the EU's conversion rules round (Regulation 1103/97, art. 5). The rounded
    amount is for people; thresholds are compared with `convert`'s exact value.
    """
    exact = convert(amount, currency, base, rate)
    shown = round_half_up(exact, minor_units(base) if base_places is None else base_places)
    if currency == base or rate is None:  # convert refuses a missing rate for another currency
        return Valuation(base_currency=base, base_amount=shown, rate=Decimal(1))
    return Valuation(base_currency=base, base_amount=shown, rate=rate.rate, rate_as_of=rate.as_of)


def describe_price(
    amount: Decimal,
    currency: str,
    valuation: Valuation | None = None,
    places: Callable[[str], int] = minor_units,
) -> str:
    """'1200.00 EUR', or '200000 JPY (1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)'.

    `places` gives a currency's minor units: babel's by default, a policy snapshot's in a
    workflow."""
    text = format_money(amount, currency, places(currency))
    worth = valuation.describe(currency, places) if valuation else ""
    return f"{text} ({worth})" if worth else text


DEFAULT_BASE_CURRENCY = "EUR"
# Illustrative round figures, dated when they were set: not market data. A deployment sets
# the rates it uses (policy file or POLICY_RATES); docs/operations.md says how.
_SET_ON = date(2026, 11, 20)
DEFAULT_RATES: dict[str, Rate] = {
    "USD": Rate(rate=Decimal("0.86"), as_of=_SET_ON),
    "GBP": Rate(rate=Decimal("1.14"), as_of=_SET_ON),
    "CHF": Rate(rate=Decimal("1.07"), as_of=_SET_ON),
    "JPY": Rate(rate=Decimal("0.0055"), as_of=_SET_ON),
}
