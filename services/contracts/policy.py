"""The approval policy as data: tiers, deadlines, escalation and approver authority.

Pure Python: no FastAPI, no Dapr. A snapshot of the policy (`ApprovalPolicy.snapshot`) goes
into each workflow's input, so a running order keeps the rules it started with and replay stays
deterministic: the snapshot carries the exchange rates (with their dates) and the minor units
of every accepted currency, so a workflow never looks anything up.

Thresholds are in the policy's base currency. An order in another currency is valued in the
base currency with the configured rate and its tier decided on that exact value
(`ApprovalPolicy.tier_of`); the value is rounded only to be shown (`ApprovalPolicy.value`). A
currency with no rate is not accepted at all.

Workflows read their snapshot back with `PolicySnapshot.read`, which also knows the snapshots
of earlier releases and what they decided tiers on (`TierBasis`), so an order replays the way
it started. It trusts the currency codes and minor units the snapshot has (they were checked
against babel when the snapshot was taken), so nothing a workflow does asks babel again.

Errors: PolicyError (a setting is invalid; the message names the field).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from contracts.messages import DEFAULT_MAX_AMOUNT, TRUSTED, MessageLimits, Tier
from contracts.money import (
    DEFAULT_BASE_CURRENCY,
    DEFAULT_RATES,
    MoneyError,
    Rate,
    Valuation,
    convert,
    describe_price,
    is_currency_code,
    minor_units,
    value_in,
)

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class PolicyError(ValueError):
    """A policy setting is invalid; the message names the field."""


def parse_duration(value: Any) -> timedelta:
    """Parse "72h", "1h30m", "500ms" (Go style) or "P3D", "PT5S" (ISO-8601) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    text = str(value).strip()
    seconds: float | None = None
    iso = _ISO.match(text.upper())
    if iso and text.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        seconds = (
            parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    elif text and _GO_PART.sub("", text) == "":
        seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(text))
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration; use Go style (72h, 90s) or ISO-8601 (P3D)")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class OnManagerTimeout(StrEnum):
    ESCALATE_TO_VP = "escalate_to_vp"
    REJECT = "reject"


class TierBasis(StrEnum):
    """What an order's tier is decided on. A snapshot says which, so replay repeats it."""

    # Releases before base currencies: the order's own number, whatever its currency.
    RAW_AMOUNT = "raw_amount"
    # The first base-currency release: the value rounded to the base currency's minor units.
    ROUNDED_VALUE = "rounded_value"
    # Since: the exact value, amount x rate; it is rounded only to be shown.
    EXACT_VALUE = "exact_value"


# A snapshot's own key, not a setting: what the tiers of orders started under it are decided on.
TIER_BASIS = "tier_basis"
# Validation context for a snapshot read back: trusted, nothing looked up in babel.
_FROM_SNAPSHOT = object()


class ApprovalPolicy(BaseModel):
    """The business rules; the defaults are the ones the business agreed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The thresholds and max_amount are amounts in this currency.
    base_currency: str = DEFAULT_BASE_CURRENCY
    auto_approve_below: Annotated[Decimal, Field(ge=0)] = Decimal("500")
    manager_limit: Annotated[Decimal, Field(gt=0)] = Decimal("5000")
    manager_deadline: Duration = timedelta(days=3)
    vp_deadline: Duration = timedelta(days=5)
    on_manager_timeout: OnManagerTimeout = OnManagerTimeout.ESCALATE_TO_VP
    # The order workflow gives up waiting for an outcome after this long.
    order_backstop: Duration = timedelta(days=10)
    # Approvers of a stage are reminded this long before it is due; 0 sends no reminder.
    reminder_before: Duration = timedelta(hours=24)
    # Base-currency units per one unit of each other currency, with the date of the rate.
    rates: dict[str, Rate] = DEFAULT_RATES
    # Narrows the accepted currencies; None accepts the base currency and every rated one.
    currencies: frozenset[str] | None = None
    # Decimal places per accepted currency; filled from babel for those not given.
    minor_units: dict[str, Annotated[int, Field(ge=0, le=6)]] = {}
    max_amount: Annotated[Decimal, Field(gt=0)] = DEFAULT_MAX_AMOUNT

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ApprovalPolicy:
        for name in ("manager_deadline", "vp_deadline", "order_backstop"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.reminder_before < timedelta(0):
            raise ValueError("reminder_before must not be negative (0 sends no reminder)")
        if self.manager_limit < self.auto_approve_below:
            raise ValueError("manager_limit must not be below auto_approve_below")
        longest = self.vp_deadline + (
            self.manager_deadline
            if self.on_manager_timeout is OnManagerTimeout.ESCALATE_TO_VP
            else timedelta(0)
        )
        if self.order_backstop < longest:
            raise ValueError(
                f"order_backstop ({self.order_backstop}) must cover the longest approval "
                f"({longest}); otherwise orders expire while an approver may still decide"
            )
        if info.context is _FROM_SNAPSHOT:
            return self  # its codes and minor units were checked when it was taken
        self._check_currencies()
        # Frozen, but still being validated: nobody has seen this instance yet.
        needed = sorted(self.accepted | {self.base_currency})
        filled = {c: self.minor_units.get(c, minor_units(c)) for c in needed}
        object.__setattr__(self, "minor_units", filled)
        return self

    def _check_currencies(self) -> None:
        base = self.base_currency
        if not is_currency_code(base):
            raise ValueError(f"base_currency: {base!r} is not an ISO 4217 currency code")
        for code in self.rates:
            if not is_currency_code(code):
                raise ValueError(f"rates: {code!r} is not an ISO 4217 currency code")
            if code == base:
                raise ValueError(f"rates: {code} is the base currency; it needs no rate")
        if self.currencies is not None and not self.currencies:
            raise ValueError("currencies: empty; leave it out to accept every rated currency")
        for code in sorted(self.currencies or ()):
            if code != base and code not in self.rates:
                raise ValueError(
                    f"currencies: {code!r} has no rate to {base} in rates, so its amounts "
                    f"could not be compared with the thresholds; add a rate or remove it"
                )

    @property
    def accepted(self) -> frozenset[str]:
        """The currencies orders may be in: the base currency and those with a rate."""
        rated = frozenset({self.base_currency, *self.rates})
        return rated if self.currencies is None else rated & self.currencies

    @property
    def limits(self) -> MessageLimits:
        return MessageLimits(
            max_amount=self.max_amount,
            currencies=self.accepted,
            base_currency=self.base_currency,
            rates={c: r for c, r in self.rates.items() if c in self.accepted},
            minor_units=dict(self.minor_units),
        )

    def value(self, amount: Decimal, currency: str) -> Valuation:
        """`amount` in the base currency as shown (rounded), with the rate used; MoneyError
        if the currency is not accepted."""
        return value_in(
            amount,
            currency,
            self.base_currency,
            self._rate(currency),
            self.minor_units[self.base_currency],
        )

    def exact_value(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` in the base currency, unrounded: what its tier is decided on."""
        return convert(amount, currency, self.base_currency, self._rate(currency))

    def tier_of(self, amount: Decimal, currency: str) -> Tier | None:
        """The first approval tier for an order of `amount` in `currency`, on its exact value
        in the base currency (499.9995 EUR is below 500, 5000.0005 EUR above 5000)."""
        return self.tier_for(self.exact_value(amount, currency))

    def tier_for(self, amount: Decimal) -> Tier | None:
        """The first approval tier for `amount` (in the base currency), or None when it is
        approved automatically: below auto_approve_below; manager up to and including
        manager_limit; VP above."""
        if amount < self.auto_approve_below:
            return None
        return Tier.MANAGER if amount <= self.manager_limit else Tier.VP

    def _rate(self, currency: str) -> Rate | None:
        """The rate to the base currency (None for the base itself); MoneyError if not accepted."""
        if currency not in self.accepted:
            why = "" if currency in self.rates else f": no exchange rate to {self.base_currency}"
            raise MoneyError(
                f"{currency} is not accepted{why}; accepted: {', '.join(sorted(self.accepted))}"
            )
        return self.rates.get(currency)

    def deadline_for(self, tier: Tier) -> timedelta:
        return self.manager_deadline if tier is Tier.MANAGER else self.vp_deadline

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy for a workflow input; `PolicySnapshot.read` reads it back."""
        return {**self.model_dump(mode="json"), TIER_BASIS: TierBasis.EXACT_VALUE.value}

    def __hash__(self) -> int:
        # Frozen, so hashable, although the rate and minor-unit tables are dicts.
        return hash(json.dumps(self.snapshot(), sort_keys=True))


@dataclass(frozen=True)
class PolicySnapshot:
    """The policy as a workflow reads it back from its input, and what it decides tiers on."""

    policy: ApprovalPolicy
    basis: TierBasis

    @classmethod
    def read(cls, snapshot: Mapping[str, Any]) -> PolicySnapshot:
        """A snapshot taken by `ApprovalPolicy.snapshot`, in this release or an earlier one."""
        data = dict(snapshot)
        marked = data.pop(TIER_BASIS, None)
        if "currencies" in data and "base_currency" not in data:
            # From before base currencies: its currency list may name currencies without a
            # rate. It decided nothing that replay needs again, so it is left out.
            del data["currencies"]
            basis = TierBasis.RAW_AMOUNT
        else:
            basis = TierBasis(marked) if marked else TierBasis.ROUNDED_VALUE
        # Snapshots from before reminders: their approvals replay as they ran, without one.
        data.setdefault("reminder_before", 0)
        policy = ApprovalPolicy.model_validate(data, context=_FROM_SNAPSHOT)
        if basis is not TierBasis.RAW_AMOUNT:
            missing = sorted((policy.accepted | {policy.base_currency}) - set(policy.minor_units))
            if missing:
                raise PolicyError(f"policy snapshot: no minor units for {', '.join(missing)}")
        return cls(policy, basis)

    @property
    def limits(self) -> MessageLimits:
        """What an order is checked against; an order from before base currencies passed
        that release's checks when it started and is read as it was then."""
        if self.basis is TierBasis.RAW_AMOUNT:
            return TRUSTED
        return replace(self.policy.limits, from_snapshot=True)

    def describe(self, amount: Decimal, currency: str, valuation: Valuation | None) -> str:
        """`describe_price` in the snapshot's minor units. A snapshot from before base
        currencies has none: its amounts are shown with the decimals they have, as then."""
        return describe_price(
            amount, currency, valuation, lambda code: self.policy.minor_units.get(code, 0)
        )

    def value(self, amount: Decimal, currency: str) -> Valuation | None:
        """What the order is worth in the base currency (None before base currencies)."""
        if self.basis is TierBasis.RAW_AMOUNT:
            return None
        return self.policy.value(amount, currency)

    def tier(self, amount: Decimal, currency: str) -> Tier | None:
        """The first approval tier, decided on what orders under this snapshot were tiered on."""
        if self.basis is TierBasis.RAW_AMOUNT:
            return self.policy.tier_for(amount)
        if self.basis is TierBasis.ROUNDED_VALUE:
            return self.policy.tier_for(self.policy.value(amount, currency).base_amount)
        return self.policy.tier_of(amount, currency)


_RANK = {Tier.MANAGER: 1, Tier.VP: 2}


def covers(decided_at: Tier | None, needed: Tier) -> bool:
    """Whether an approval at stage level `decided_at` is enough for an order that needs
    `needed` (a VP's approval covers a manager's; nothing covers a missing level)."""
    return decided_at is not None and _RANK[decided_at] >= _RANK[needed]


def same_person(a: str, b: str) -> bool:
    """Identities compared as people, not spellings: "Bob", "bob" and "BOB" are one person."""

    def norm(x: str) -> str:
        return unicodedata.normalize("NFKC", x).casefold().strip()

    return norm(a) == norm(b)


def authority_problem(
    *, stage_tier: Tier, approver_id: str, approver_role: Tier, customer_id: str
) -> str | None:
    """Why this approver may not decide this stage, or None when they may."""
    if same_person(approver_id, customer_id):
        return "approvers may not decide their own order"
    if stage_tier is Tier.VP and approver_role is not Tier.VP:
        return "a manager may not decide a VP stage"
    return None


ENV_PREFIX = "POLICY_"


def load_policy(env: Mapping[str, str] | None = None) -> ApprovalPolicy:
    """Defaults, then the YAML file named by POLICY_FILE, then POLICY_<FIELD> variables."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = env.get("POLICY_FILE")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise PolicyError(f"policy file {path} must be a mapping of settings")
        values.update(loaded)
    for field in ApprovalPolicy.model_fields:
        key = ENV_PREFIX + field.upper()
        if key in env:
            values[field] = _from_env(field, env[key])
    try:
        return ApprovalPolicy.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "policy"
            problems.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        raise PolicyError("invalid approval policy: " + "; ".join(problems)) from None


def _from_env(field: str, raw: str) -> Any:
    """A POLICY_<FIELD> value: lists and tables are comma lists ("USD=0.86@2026-11-20,...")."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if field == "currencies":
        return items
    if field == "minor_units":
        return dict(_pair(item, "POLICY_MINOR_UNITS", "CODE=PLACES") for item in items)
    if field == "rates":
        table = {}
        for item in items:
            code, value = _pair(item, "POLICY_RATES", "CODE=RATE@YYYY-MM-DD")
            rate, at, as_of = value.partition("@")
            if not at:
                raise PolicyError(f"POLICY_RATES: {item!r} is not CODE=RATE@YYYY-MM-DD")
            table[code] = {"rate": rate.strip(), "as_of": as_of.strip()}
        return table
    return raw


def _pair(item: str, variable: str, shape: str) -> tuple[str, str]:
    key, eq, value = item.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise PolicyError(f"{variable}: {item!r} is not {shape}")
    return key.strip(), value.strip()
