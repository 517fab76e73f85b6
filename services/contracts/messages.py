"""Message contracts shared by every service: one pydantic model per message type.

Each message has a stable business id (`message_id`) that the publisher also sets as the
CloudEvent `id`, so every subscriber can drop duplicates. Money is Decimal, timestamps are
timezone-aware, ids fit Dapr's workflow instance-id rules once prefixed.

Free text (reasons, details, names, SKUs) is plain: no control characters or bidirectional
overrides (contracts.text). Amounts are exact in their currency's minor units and normalised
to them (contracts.money).
Limits that are settings rather than rules (the accepted currencies, their minor units, the
largest amount in the base currency) come from a `MessageLimits` passed as pydantic validation
context, normally the policy's; without one, the defaults apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from contracts.money import (
    DEFAULT_BASE_CURRENCY,
    DEFAULT_RATES,
    MoneyError,
    Rate,
    Valuation,
    check_size,
    format_money,
    in_minor_units,
    is_currency_code,
    minor_units,
    value_in,
)
from contracts.text import check_plain

# Dapr workflow instance ids: at most 64 chars of [A-Za-z0-9_-]. The longest prefix we add is
# "approval-" (9 chars), so a business id may have 55.
ID_MAX = 55
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_CURRENCIES = frozenset({DEFAULT_BASE_CURRENCY, *DEFAULT_RATES})
DEFAULT_MAX_AMOUNT = Decimal("10000000")


@dataclass(frozen=True)
class MessageLimits:
    """Configurable bounds on message values, passed as validation context.

    `max_amount` is in `base_currency`; an amount in another currency is converted with
    `rates` before it is compared. `minor_units` overrides babel's decimal places per currency.
    None means "no bound": `TRUSTED` re-reads a message that was already checked (and
    normalised) against the policy in force when it entered the system (e.g. in an activity).
    `from_snapshot` marks a workflow's limits: a refused code is not looked up in babel to say
    whether it is ISO 4217 at all, so replay does not depend on babel's version (the snapshot
    has the minor units of every currency it accepts, so nothing else is looked up either).
    """

    max_amount: Decimal | None = DEFAULT_MAX_AMOUNT
    currencies: frozenset[str] | None = DEFAULT_CURRENCIES
    base_currency: str = DEFAULT_BASE_CURRENCY
    rates: Mapping[str, Rate] = field(default_factory=lambda: dict(DEFAULT_RATES), hash=False)
    minor_units: Mapping[str, int] | None = field(default_factory=dict, hash=False)
    from_snapshot: bool = False

    def places(self, currency: str) -> int:
        """Decimal places of `currency`: this table's, else babel's."""
        table = self.minor_units or {}
        return table[currency] if currency in table else minor_units(currency)


TRUSTED = MessageLimits(max_amount=None, currencies=None, minor_units=None)


def _given_limits(info: ValidationInfo) -> MessageLimits | None:
    ctx = info.context
    if isinstance(ctx, MessageLimits):
        return ctx
    nested = ctx.get("limits") if isinstance(ctx, dict) else None
    return nested if isinstance(nested, MessageLimits) else None


def _limits(info: ValidationInfo) -> MessageLimits:
    return _given_limits(info) or MessageLimits()


def _check_id(value: str) -> str:
    if not value or len(value) > ID_MAX or not _ID_RE.fullmatch(value):
        raise ValueError(
            f"must be 1-{ID_MAX} characters of A-Z, a-z, 0-9, '_' or '-' "
            "(it becomes part of a Dapr workflow instance id)"
        )
    return value


def _plain(value: str, info: ValidationInfo) -> str:
    # Checked where text enters: validated under the limits in force (a subscription, an
    # order placed over HTTP). What our own code builds or reads back (TRUSTED, a workflow's
    # snapshot, no limits at all) is taken as it is: it was checked when it entered, or it
    # entered before this check existed and a running workflow must still replay it.
    limits = _given_limits(info)
    if limits is None or limits is TRUSTED or limits.from_snapshot:
        return value
    return check_plain(value)


# Free text in a message (reasons, details, names): no control characters, no bidi overrides.
FreeText = Annotated[str, AfterValidator(_plain)]
BusinessId = Annotated[str, AfterValidator(_check_id)]


def _one_word(value: str) -> str:
    if re.search(r"\s", value):
        raise ValueError("must be one word, without spaces")
    return value


PersonId = Annotated[FreeText, Field(min_length=1, max_length=128), AfterValidator(_one_word)]
Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class Tier(StrEnum):
    MANAGER = "manager"
    VP = "vp"


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class OrderStatus(StrEnum):
    RECEIVED = "received"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Message(BaseModel):
    """Base of every message: strict about unknown fields, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # CloudEvent `type` is f"{TYPE_PREFIX}.{ClassName}.v1".
    TYPE_PREFIX: ClassVar[str] = "order-approvals"

    @property
    def message_id(self) -> str:
        """The stable business id; also the CloudEvent id."""
        raise NotImplementedError

    @classmethod
    def event_type(cls) -> str:
        return f"{cls.TYPE_PREFIX}.{cls.__name__}.v1"


class _Priced(Message):
    # currency comes first: the amount's validation needs it.
    currency: str
    amount: Amount

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str, info: ValidationInfo) -> str:
        limits = _limits(info)
        allowed = limits.currencies
        if allowed is None:
            if not re.fullmatch(r"[A-Z]{3}", value):
                raise ValueError(f"{value!r} is not an ISO 4217 currency code")
            return value
        if value not in allowed:
            accepted = ", ".join(sorted(allowed))
            if value in limits.rates:
                raise ValueError(f"{value!r} is not accepted; use one of {accepted}")
            if not limits.from_snapshot and not is_currency_code(value):
                raise ValueError(
                    f"{value!r} is not an ISO 4217 currency code; use one of {accepted}"
                )
            raise ValueError(
                f"{value!r} is not accepted: the approval policy has no exchange rate from it to "
                f"{limits.base_currency}, so it could not compare the amount with its "
                f"thresholds; use one of {accepted}"
            )
        return value

    @field_validator("amount")
    @classmethod
    def _exact_and_within_limit(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is None:  # the currency was refused; that error says enough
            return value
        limits = _limits(info)
        try:
            check_size(value)
            if limits.minor_units is not None:
                value = in_minor_units(value, currency, limits.places(currency))
            limit = limits.max_amount
            if limit is not None:
                base = limits.base_currency
                rate = limits.rates.get(currency)
                worth = value_in(value, currency, base, rate, limits.places(base))
                if worth.base_amount > limit:
                    raise MoneyError(
                        f"must not exceed {format_money(limit, base, limits.places(base))}"
                        + (
                            f" (this is {worth.describe(currency, limits.places)})"
                            if currency != base
                            else ""
                        )
                    )
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return value


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sku: Annotated[FreeText, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0, le=100_000)]


class OrderPlaced(_Priced):
    order_id: BusinessId
    customer_id: PersonId
    items: Annotated[list[OrderItem], Field(max_length=500)] = []
    placed_at: AwareDatetime

    @property
    def message_id(self) -> str:
        return self.order_id


class ApprovalRequested(_Priced):
    request_id: Annotated[FreeText, Field(min_length=1, max_length=128)]
    order_id: BusinessId
    customer_id: PersonId
    tier: Tier
    stage: Annotated[int, Field(ge=1, le=10)]
    due_at: AwareDatetime
    reason: Annotated[FreeText, Field(max_length=500)] = ""
    # What the amount is worth in the policy's base currency, and the rate that decided the
    # tier; absent only in requests made before amounts were valued.
    valuation: Valuation | None = None

    @property
    def message_id(self) -> str:
        return self.request_id

    @staticmethod
    def make_id(order_id: str, stage: int, tier: Tier) -> str:
        return f"{order_id}-s{stage}-{tier.value}"


class ApprovalReminded(ApprovalRequested):
    """A stage still undecided before it is due: its request again, to remind its approvers.
    `request_id` is the stage's request id with "-reminder": one reminder per stage."""

    @staticmethod
    def reminder_id(order_id: str, stage: int, tier: Tier) -> str:
        return f"{ApprovalRequested.make_id(order_id, stage, tier)}-reminder"


class DecisionSubmitted(Message):
    decision_id: BusinessId
    order_id: BusinessId
    approved: bool
    approver_id: PersonId
    approver_role: Tier
    reason: Annotated[FreeText, Field(max_length=1000)] = ""
    decided_at: AwareDatetime

    @property
    def message_id(self) -> str:
        return self.decision_id


class ApprovalOutcome(Message):
    order_id: BusinessId
    outcome: Outcome
    decided_by: Annotated[FreeText, Field(min_length=1, max_length=128)]
    # The level of the stage an approver decided at; None when the policy decided (timeouts).
    tier: Tier | None = None
    reason: Annotated[FreeText, Field(max_length=1000)] = ""
    decided_at: AwareDatetime

    @property
    def message_id(self) -> str:
        return f"{self.order_id}-outcome"


class ApprovalCancelled(Message):
    """The order was cancelled while its approval was open: the approval is closed undecided."""

    order_id: BusinessId
    cancelled_by: Annotated[FreeText, Field(min_length=1, max_length=128)]
    reason: Annotated[FreeText, Field(min_length=1, max_length=500)]
    cancelled_at: AwareDatetime

    @property
    def message_id(self) -> str:
        return f"{self.order_id}-cancelled"


class OrderStatusChanged(Message):
    order_id: BusinessId
    status: OrderStatus
    at: AwareDatetime
    detail: Annotated[FreeText, Field(max_length=1000)] = ""
    # Whom the order is for (so the notifier can write to them); None in steps announced by a
    # release before it was sent.
    customer_id: PersonId | None = None

    @property
    def message_id(self) -> str:
        return f"{self.order_id}-{self.status.value}"


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("an array"), for error messages."""
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "true or false"),
        ((int, float, Decimal), "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    ]
    return next((name for t, name in kinds if isinstance(value, t)), "null")


def reworded(err: Mapping[str, Any]) -> str:
    """A pydantic error's message, in JSON's words where pydantic speaks Python."""
    kind, given = err.get("type"), err.get("input")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a JSON object, not {json_kind(given)}"
    if kind == "list_type":
        return f"must be a JSON array, not {json_kind(given)}"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


def describe_errors(exc: Any) -> str:
    """One readable line from a pydantic ValidationError: 'field: problem; field: problem'."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "message"
        parts.append(f"{where}: {reworded(err)}")
    return "; ".join(parts)
