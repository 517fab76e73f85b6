"""Money: minor units from babel, one formatting, exact conversion rounded only to be shown."""

import re
from datetime import date
from decimal import Decimal

import pytest

from contracts.money import (
    MoneyError,
    Rate,
    Valuation,
    convert,
    describe_price,
    format_money,
    in_minor_units,
    minor_units,
    value_in,
)

NOV_20 = date(2026, 11, 20)


@pytest.mark.parametrize(("code", "places"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("BHD", 3)])
def test_minor_units_come_from_babel(code: str, places: int) -> None:
    assert minor_units(code) == places


@pytest.mark.parametrize(
    ("amount", "code", "normalised"),
    [
        ("2500", "EUR", "2500.00"),
        ("2500.5", "EUR", "2500.50"),
        ("1E+3", "EUR", "1000.00"),
        ("9000", "JPY", "9000"),
        ("9000.00", "JPY", "9000"),
        ("12.345", "BHD", "12.345"),
        ("12.3", "BHD", "12.300"),
    ],
)
def test_amounts_are_normalised_to_their_minor_units(
    amount: str, code: str, normalised: str
) -> None:
    assert str(in_minor_units(Decimal(amount), code)) == normalised


@pytest.mark.parametrize(
    ("amount", "code", "says"),
    [
        ("9000.5", "JPY", "JPY has no minor units: use a whole number (got 9000.5)"),
        ("1.234", "EUR", "EUR has 2 decimal places; got 1.234"),
        ("12.3456", "BHD", "BHD has 3 decimal places; got 12.3456"),
        ("1E-100000", "EUR", "EUR has 2 decimal places"),
        ("1E+40", "EUR", "must be below 10^18"),
        ("NaN", "EUR", "finite"),
    ],
)
def test_amounts_finer_than_their_minor_units_are_refused(
    amount: str, code: str, says: str
) -> None:
    with pytest.raises(MoneyError, match=re.escape(says)):
        in_minor_units(Decimal(amount), code)


def test_an_explicit_number_of_places_overrides_babel() -> None:
    assert str(in_minor_units(Decimal("5.125"), "IQD", places=3)) == "5.125"
    with pytest.raises(MoneyError, match="IQD has no minor units"):
        in_minor_units(Decimal("5.125"), "IQD", places=0)


@pytest.mark.parametrize(
    ("amount", "code", "text"),
    [
        ("2500", "EUR", "2500.00 EUR"),
        ("9000", "JPY", "9000 JPY"),
        ("12.3", "BHD", "12.300 BHD"),
        ("1E+4", "USD", "10000.00 USD"),
    ],
)
def test_one_formatting_in_the_currency_s_minor_units(amount: str, code: str, text: str) -> None:
    assert format_money(Decimal(amount), code) == text


@pytest.mark.parametrize(
    ("amount", "places", "text"),
    [
        ("1500000.875", None, "1500000.875 IQD"),  # babel: IQD has no minor units
        ("1500000.875", 3, "1500000.875 IQD"),
        ("1500000.8", 3, "1500000.800 IQD"),
        ("1500000.875", 0, "1500000.875 IQD"),
    ],
)
def test_an_amount_is_never_rounded_to_be_shown(amount: str, places: int | None, text: str) -> None:
    assert format_money(Decimal(amount), "IQD", places) == text


def test_conversion_is_exact_then_rounded_half_up_to_the_base_minor_units() -> None:
    half_a_cent = Rate(rate=Decimal("0.005"), as_of=NOV_20)
    assert value_in(Decimal(100000), "JPY", "EUR", half_a_cent).base_amount == Decimal("500.00")
    assert value_in(Decimal(99999), "JPY", "EUR", half_a_cent).base_amount == Decimal("500.00")
    assert value_in(Decimal(99998), "JPY", "EUR", half_a_cent).base_amount == Decimal("499.99")
    precise = Rate(rate=Decimal("0.006123456789012345"), as_of=NOV_20)
    worth = value_in(Decimal("9999999"), "JPY", "EUR", precise)  # 61234.561766...
    assert worth.base_amount == Decimal("61234.56") and worth.rate_as_of == NOV_20


def test_the_exact_value_is_never_rounded() -> None:
    rate = Rate(rate=Decimal("0.0055"), as_of=NOV_20)
    assert convert(Decimal(909091), "JPY", "EUR", rate) == Decimal("5000.0005")
    assert value_in(Decimal(909091), "JPY", "EUR", rate).base_amount == Decimal("5000.00")
    assert convert(Decimal("1200.00"), "EUR", "EUR", None) == Decimal("1200.00")


def test_base_currency_needs_no_rate_and_other_currencies_do() -> None:
    same = value_in(Decimal("1200.00"), "EUR", "EUR", None)
    assert same == Valuation(base_currency="EUR", base_amount=Decimal("1200.00"), rate=Decimal(1))
    with pytest.raises(MoneyError, match="no exchange rate from SEK to EUR"):
        value_in(Decimal(10), "SEK", "EUR", None)


def test_rates_are_kept_plainly_as_configured() -> None:
    assert str(Rate(rate="1E-2", as_of=NOV_20).rate) == "0.01"
    assert str(Rate(rate="0.00610", as_of=NOV_20).rate) == "0.0061"
    assert str(Rate(rate="1E+2", as_of=NOV_20).rate) == "100"
    for bad in ("0", "-1", "NaN", "abc"):
        with pytest.raises(ValueError):
            Rate(rate=bad, as_of=NOV_20)


def test_a_price_says_what_it_is_worth_and_which_rate_said_so() -> None:
    rate = Rate(rate=Decimal("0.0055"), as_of=NOV_20)
    worth = value_in(Decimal(200000), "JPY", "EUR", rate)
    assert (
        describe_price(Decimal(200000), "JPY", worth)
        == "200000 JPY (1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"
    )
    euros = value_in(Decimal("1200.00"), "EUR", "EUR", None)
    assert describe_price(Decimal("1200.00"), "EUR", euros) == "1200.00 EUR"
    assert describe_price(Decimal("1200"), "EUR") == "1200.00 EUR"
