import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

from contracts.messages import Tier
from contracts.money import MoneyError, Rate
from contracts.policy import (
    ApprovalPolicy,
    OnManagerTimeout,
    PolicyError,
    PolicySnapshot,
    TierBasis,
    authority_problem,
    covers,
    load_policy,
    parse_duration,
)
from plumbing.settings import ServiceSettings

DEFAULT = ApprovalPolicy()


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        ("0.01", None),
        ("499.99", None),
        ("500.00", Tier.MANAGER),
        ("5000.00", Tier.MANAGER),
        ("5000.01", Tier.VP),
        ("9999999.99", Tier.VP),
    ],
)
def test_tier_boundaries(amount: str, tier: Tier | None) -> None:
    assert DEFAULT.tier_for(Decimal(amount)) == tier


def test_defaults_are_the_business_rules() -> None:
    assert DEFAULT.manager_deadline == timedelta(days=3)
    assert DEFAULT.vp_deadline == timedelta(days=5)
    assert DEFAULT.on_manager_timeout is OnManagerTimeout.ESCALATE_TO_VP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72h", timedelta(hours=72)),
        ("1h30m", timedelta(minutes=90)),
        ("5s", timedelta(seconds=5)),
        ("500ms", timedelta(milliseconds=500)),
        ("PT5S", timedelta(seconds=5)),
        ("P3D", timedelta(days=3)),
        ("P1DT12H", timedelta(hours=36)),
        ("pt2m", timedelta(minutes=2)),
        (90, timedelta(seconds=90)),  # a number in a policy file: seconds
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_durations_go_style_and_iso(text: str | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3 days", "P", "PT", "72", "h", "-5s", "5x", True])
def test_bad_durations_say_what_is_accepted(text: str | bool) -> None:
    with pytest.raises(ValueError, match="Go style"):
        parse_duration(text)


def test_env_overrides_and_snapshot_round_trip() -> None:
    policy = load_policy(
        {
            "POLICY_MANAGER_DEADLINE": "PT5S",
            "POLICY_VP_DEADLINE": "7s",
            "POLICY_ORDER_BACKSTOP": "1m",
            "POLICY_CURRENCIES": "EUR, USD",
        }
    )
    assert policy.manager_deadline == timedelta(seconds=5)
    assert policy.accepted == frozenset({"EUR", "USD"})
    assert PolicySnapshot.read(policy.snapshot()) == PolicySnapshot(policy, TierBasis.EXACT_VALUE)


# Tier boundaries per currency with the default rates (EUR per unit: JPY 0.0055, GBP 1.14,
# USD 0.86, CHF 1.07). The tier is decided on the exact value in euros: auto below 500, manager
# up to and including 5000, VP above. The value shown is rounded half-up to cents, so an order
# shown as 500.00 EUR may be approved at once and one shown as 5000.00 EUR may need a VP.
@pytest.mark.parametrize(
    ("amount", "currency", "exact", "shown", "tier"),
    [
        ("499.99", "EUR", "499.99", "499.99", None),
        ("500.00", "EUR", "500.00", "500.00", Tier.MANAGER),
        ("9000", "JPY", "49.5", "49.50", None),
        ("90908", "JPY", "499.994", "499.99", None),
        ("90909", "JPY", "499.9995", "500.00", None),
        ("909089", "JPY", "4999.9895", "4999.99", Tier.MANAGER),
        ("909091", "JPY", "5000.0005", "5000.00", Tier.VP),
        ("909092", "JPY", "5000.006", "5000.01", Tier.VP),
        ("438.59", "GBP", "499.9926", "499.99", None),
        ("438.60", "GBP", "500.004", "500.00", Tier.MANAGER),
        ("4385.96", "GBP", "4999.9944", "4999.99", Tier.MANAGER),
        (
            "4900.00",
            "GBP",
            "5586",
            "5586.00",
            Tier.VP,
        ),  # routed to a manager before, as 4900 EUR is
        ("581.38", "USD", "499.9868", "499.99", None),
        ("581.39", "USD", "499.9954", "500.00", None),
        ("581.40", "USD", "500.004", "500.00", Tier.MANAGER),
        ("5813.95", "USD", "4999.997", "5000.00", Tier.MANAGER),
        ("5813.96", "USD", "5000.0056", "5000.01", Tier.VP),
        ("4672.90", "CHF", "5000.003", "5000.00", Tier.VP),
        ("4672.91", "CHF", "5000.0137", "5000.01", Tier.VP),
    ],
)
def test_tier_boundaries_per_currency_on_the_exact_value(
    amount: str, currency: str, exact: str, shown: str, tier: Tier | None
) -> None:
    assert DEFAULT.exact_value(Decimal(amount), currency) == Decimal(exact)
    worth = DEFAULT.value(Decimal(amount), currency)
    assert (worth.base_currency, worth.base_amount) == ("EUR", Decimal(shown))
    assert DEFAULT.tier_of(Decimal(amount), currency) == tier


def test_conversion_at_the_exact_boundary() -> None:
    policy = load_policy({"POLICY_RATES": "JPY=0.005@2026-11-20"})
    at = policy.value(Decimal(100000), "JPY")
    assert at.base_amount == Decimal("500.00")
    assert policy.tier_of(Decimal(100000), "JPY") is Tier.MANAGER
    below = policy.value(Decimal(99999), "JPY")  # 499.995
    assert below.base_amount == Decimal("500.00")
    assert policy.tier_of(Decimal(99999), "JPY") is None
    assert policy.tier_of(Decimal(1_000_000), "JPY") is Tier.MANAGER
    over = policy.value(Decimal(1_000_001), "JPY")  # 5000.005
    assert over.base_amount == Decimal("5000.01")
    assert policy.tier_of(Decimal(1_000_001), "JPY") is Tier.VP


def test_a_currency_without_a_rate_is_refused_not_routed_by_its_number() -> None:
    policy = load_policy({"POLICY_RATES": "JPY=0.005@2026-11-20"})
    assert policy.accepted == frozenset({"EUR", "JPY"})
    with pytest.raises(MoneyError, match="USD is not accepted: no exchange rate to EUR; "):
        policy.value(Decimal(10), "USD")


def test_the_rate_and_its_date_travel_in_the_snapshot() -> None:
    snap = DEFAULT.snapshot()
    assert snap["base_currency"] == "EUR"
    assert snap["rates"]["JPY"] == {"rate": "0.0055", "as_of": "2026-11-20"}
    assert snap["minor_units"] == {"CHF": 2, "EUR": 2, "GBP": 2, "JPY": 0, "USD": 2}
    changed = {**snap, "rates": {"JPY": {"rate": "0.01", "as_of": "2026-11-21"}}}
    replayed = PolicySnapshot.read(changed).policy
    assert replayed.value(Decimal(90000), "JPY").base_amount == Decimal("900.00")


def test_rates_from_a_policy_file_with_another_base_currency(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "base_currency: USD\n"
        "auto_approve_below: 1000\n"
        "rates:\n"
        "  EUR: {rate: '1.16', as_of: 2026-11-20}\n"
        "  BHD: {rate: '2.65', as_of: 2026-11-19}\n"
        "minor_units: {BHD: 3}\n"
    )
    policy = load_policy({"POLICY_FILE": str(path)})
    assert policy.accepted == frozenset({"USD", "EUR", "BHD"})
    worth = policy.value(Decimal("377.358"), "BHD")  # 999.9987 USD
    assert (worth.base_amount, worth.rate_as_of) == (Decimal("1000.00"), date(2026, 11, 19))
    assert policy.tier_of(Decimal("377.358"), "BHD") is None  # below 1000, shown as 1000.00
    assert policy.tier_of(Decimal("377.359"), "BHD") is Tier.MANAGER  # 1000.00135
    assert policy.limits.minor_units == {"BHD": 3, "EUR": 2, "USD": 2}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"POLICY_RATES": "JPY:0.005"}, "POLICY_RATES: 'JPY:0.005' is not CODE=RATE@YYYY-MM-DD"),
        ({"POLICY_RATES": "JPY=0.005"}, "POLICY_RATES: 'JPY=0.005' is not CODE=RATE@YYYY-MM-DD"),
        ({"POLICY_RATES": "JPY=-1@2026-11-20"}, "rates.JPY.rate: Input should be greater than 0"),
        ({"POLICY_RATES": "JPY=0.005@soon"}, "rates.JPY.as_of: Input should be a valid date"),
        ({"POLICY_RATES": "XYZ=1@2026-11-20"}, "rates: 'XYZ' is not an ISO 4217 currency code"),
        ({"POLICY_RATES": "EUR=1@2026-11-20"}, "rates: EUR is the base currency"),
        ({"POLICY_BASE_CURRENCY": "EURO"}, "base_currency: 'EURO' is not an ISO 4217"),
        (
            {"POLICY_CURRENCIES": "EUR,SEK"},
            "currencies: 'SEK' has no rate to EUR in rates, so its amounts could not be "
            "compared with the thresholds",
        ),
        ({"POLICY_MINOR_UNITS": "JPY"}, "POLICY_MINOR_UNITS: 'JPY' is not CODE=PLACES"),
        ({"POLICY_MINOR_UNITS": "=2"}, "POLICY_MINOR_UNITS: '=2' is not CODE=PLACES"),
        ({"POLICY_MINOR_UNITS": "JPY="}, "POLICY_MINOR_UNITS: 'JPY=' is not CODE=PLACES"),
        ({"POLICY_MINOR_UNITS": "JPY=2=3"}, "minor_units.JPY: Input should be a valid integer"),
        ({"POLICY_CURRENCIES": ""}, "currencies: empty"),
    ],
)
def test_bad_money_settings_are_refused_at_startup(env: dict[str, str], says: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(says)):
        load_policy(env)


def test_no_rates_accepts_the_base_currency_only() -> None:
    assert load_policy({"POLICY_RATES": ""}).accepted == frozenset({"EUR"})


def test_policy_file_with_a_bad_value_names_the_field(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("manager_deadline: soon\nauto_approve_below: 500\n")
    with pytest.raises(PolicyError, match="manager_deadline"):
        load_policy({"POLICY_FILE": str(path)})


def test_backstop_shorter_than_the_longest_approval_is_refused() -> None:
    with pytest.raises(PolicyError, match="order_backstop"):
        load_policy({"POLICY_ORDER_BACKSTOP": "72h"})


def test_unknown_setting_is_refused(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("manager_dedline: 3d\n")
    with pytest.raises(PolicyError, match="manager_dedline"):
        load_policy({"POLICY_FILE": str(path)})


@pytest.mark.parametrize(
    ("stage", "approver", "role", "problem"),
    [
        (Tier.MANAGER, "m1", Tier.MANAGER, None),
        (Tier.MANAGER, "v1", Tier.VP, None),
        (Tier.VP, "v1", Tier.VP, None),
        (Tier.VP, "m1", Tier.MANAGER, "manager may not"),
        (Tier.MANAGER, "cust-1", Tier.MANAGER, "own order"),
        (Tier.VP, "cust-1", Tier.VP, "own order"),
    ],
)
def test_authority(stage: Tier, approver: str, role: Tier, problem: str | None) -> None:
    found = authority_problem(
        stage_tier=stage, approver_id=approver, approver_role=role, customer_id="cust-1"
    )
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize("customer", ["bob", "Bob", "BOB", "\uff42\uff4f\uff42", " bob"])
def test_nobody_decides_their_own_order_however_it_is_spelled(customer: str) -> None:
    problem = authority_problem(
        stage_tier=Tier.MANAGER, approver_id="bob", approver_role=Tier.MANAGER, customer_id=customer
    )
    assert problem == "approvers may not decide their own order"


def test_another_person_may_decide() -> None:
    assert (
        authority_problem(
            stage_tier=Tier.MANAGER,
            approver_id="bob",
            approver_role=Tier.MANAGER,
            customer_id="bobby",
        )
        is None
    )


@pytest.mark.parametrize(
    ("decided_at", "needed", "enough"),
    [
        (Tier.MANAGER, Tier.MANAGER, True),
        (Tier.VP, Tier.MANAGER, True),
        (Tier.VP, Tier.VP, True),
        (Tier.MANAGER, Tier.VP, False),
        (None, Tier.MANAGER, False),
    ],
)
def test_an_approval_covers_its_own_level_and_below(
    decided_at: Tier | None, needed: Tier, enough: bool
) -> None:
    assert covers(decided_at, needed) is enough


def test_a_currency_without_a_rate_is_refused_naming_those_accepted() -> None:
    with pytest.raises(MoneyError) as refused:
        DEFAULT.value(Decimal("100"), "SEK")
    assert str(refused.value) == (
        "SEK is not accepted: no exchange rate to EUR; accepted: CHF, EUR, GBP, JPY, USD"
    )


def test_narrowed_currencies_are_refused_by_name() -> None:
    policy = load_policy({"POLICY_CURRENCIES": "USD"})
    assert policy.accepted == frozenset({"USD"})
    assert policy.value(Decimal("600.00"), "USD").base_amount == Decimal("516.00")
    with pytest.raises(MoneyError, match=r"^JPY is not accepted; accepted: USD$"):
        policy.value(Decimal(1), "JPY")


def test_a_policy_is_hashable_like_the_frozen_settings_that_hold_it() -> None:
    assert hash(DEFAULT) == hash(PolicySnapshot.read(DEFAULT.snapshot()).policy)
    assert hash(ServiceSettings(app_id="orders")) == hash(ServiceSettings(app_id="orders"))


def test_snapshots_of_earlier_releases_say_what_their_tiers_were_decided_on() -> None:
    now = DEFAULT.snapshot()
    assert now["tier_basis"] == "exact_value"
    rounded = {k: v for k, v in now.items() if k != "tier_basis"}  # the first base-currency one
    raw = {  # from before base currencies: a currency list, thresholds in any currency
        k: v for k, v in rounded.items() if k not in ("base_currency", "rates", "minor_units")
    }
    raw["currencies"] = ["EUR", "JPY", "SEK"]
    assert PolicySnapshot.read(now).basis is TierBasis.EXACT_VALUE
    assert PolicySnapshot.read(rounded).basis is TierBasis.ROUNDED_VALUE
    assert PolicySnapshot.read(raw).basis is TierBasis.RAW_AMOUNT
    # 909,091 JPY is 5000.0005 EUR: a VP's now, a manager's when the rounded value decided.
    amount = Decimal(909091)
    assert PolicySnapshot.read(now).tier(amount, "JPY") is Tier.VP
    assert PolicySnapshot.read(rounded).tier(amount, "JPY") is Tier.MANAGER
    assert PolicySnapshot.read(raw).tier(amount, "JPY") is Tier.VP  # the raw number
    assert PolicySnapshot.read(raw).value(amount, "JPY") is None


def test_a_snapshot_is_trusted_but_must_carry_the_minor_units_it_accepts() -> None:
    snap = load_policy({"POLICY_MINOR_UNITS": "JPY=2"}).snapshot()
    assert PolicySnapshot.read(snap).policy.minor_units["JPY"] == 2  # not babel's 0
    units = {k: v for k, v in snap["minor_units"].items() if k not in ("GBP", "USD")}
    torn = {**snap, "minor_units": units}
    with pytest.raises(PolicyError, match=r"^policy snapshot: no minor units for GBP, USD$"):
        PolicySnapshot.read(torn)


def test_every_invalid_setting_is_named_in_one_message(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("manager_deadline: soon\nvp_deadline: later\n")
    with pytest.raises(PolicyError) as raised:
        load_policy({"POLICY_FILE": str(path)})
    not_a_duration = "is not a duration; use Go style (72h, 90s) or ISO-8601 (P3D)"
    assert str(raised.value) == (
        f"invalid approval policy: manager_deadline: 'soon' {not_a_duration}; "
        f"vp_deadline: 'later' {not_a_duration}"
    )


def test_a_rule_across_settings_is_said_of_the_policy() -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy({"POLICY_ORDER_BACKSTOP": "72h"})
    assert str(raised.value) == (
        "invalid approval policy: policy: order_backstop (3 days, 0:00:00) must cover the "
        "longest approval (8 days, 0:00:00); otherwise orders expire while an approver may "
        "still decide"
    )


def test_a_policy_file_that_cannot_be_used_is_named(tmp_path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError, match=f"^cannot read policy file {re.escape(str(missing))}: "):
        load_policy({"POLICY_FILE": str(missing)})
    listed = tmp_path / "list.yaml"
    listed.write_text("- manager_deadline\n")
    with pytest.raises(PolicyError) as raised:
        load_policy({"POLICY_FILE": str(listed)})
    assert str(raised.value) == f"policy file {listed} must be a mapping of settings"


def test_without_a_mapping_the_process_environment_is_read(monkeypatch) -> None:
    monkeypatch.setenv("POLICY_AUTO_APPROVE_BELOW", "100")
    assert load_policy().auto_approve_below == Decimal("100")


def test_equal_policies_hash_equal_whatever_the_order_of_their_tables() -> None:
    usd, gbp = Rate(rate="0.86", as_of="2026-11-20"), Rate(rate="1.14", as_of="2026-11-20")
    one, other = (
        ApprovalPolicy(rates={"USD": usd, "GBP": gbp}),
        ApprovalPolicy(rates={"GBP": gbp, "USD": usd}),
    )
    assert one == other and hash(one) == hash(other)
    assert hash(one) != hash(ApprovalPolicy(rates={"USD": usd}))


def test_an_empty_currency_list_is_refused_saying_how_to_accept_every_rated_one() -> None:
    with pytest.raises(PolicyError) as refused:
        load_policy({"POLICY_CURRENCIES": ""})
    assert str(refused.value) == (
        "invalid approval policy: policy: currencies: empty; leave it out to accept every "
        "rated currency"
    )
