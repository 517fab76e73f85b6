"""Approval rules for the HTTP side and the read model's shape. Pure: no FastAPI, no Dapr.

Errors (DecisionRefused and its subclasses, mapped to HTTP once in approvals.app):
  UnknownApproval (404), AlreadyDecided (409), ApprovalExpired (410), NotAuthorised (403)
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, computed_field

from contracts.messages import Tier
from contracts.money import Valuation, describe_price
from contracts.policy import authority_problem
from contracts.timestamps import UtcDatetime


class DecisionRefused(Exception):
    """A decision that cannot be accepted now."""


class UnknownApproval(DecisionRefused):
    """No approval exists (yet) for this order."""


class AlreadyDecided(DecisionRefused):
    """The approval has an outcome already."""


class ApprovalExpired(DecisionRefused):
    """The approval timed out."""


class NotAuthorised(DecisionRefused):
    """The caller may not decide this stage."""


class LogEntry(BaseModel):
    """One line of the decision log: what arrived and what the workflow did with it."""

    at: UtcDatetime
    kind: str  # requested, accepted, ignored, duplicate, malformed, escalated, timed_out
    stage: int
    tier: Tier
    decision_id: str | None = None
    approver_id: str | None = None
    approved: bool | None = None
    note: str = ""


class ApprovalView(BaseModel):
    """The read model the approver inbox shows; written by the record_approval activity."""

    order_id: str
    customer_id: str
    amount: str
    currency: str
    status: str  # pending, approved, rejected, expired, terminated, failed
    tier: Tier
    stage: int
    due_at: UtcDatetime
    decided_by: str | None = None
    reason: str = ""
    # The amount in the policy's base currency and the rate (with its date) that decided the
    # tier; None for approvals requested before amounts were valued.
    valuation: Valuation | None = None
    log: list[LogEntry] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount_text(self) -> str:
        """The amount as every screen shows it, with its value in the base currency."""
        return price_text(self.amount, self.currency, self.valuation)


def price_text(amount: str, currency: str, valuation: Valuation | None) -> str:
    """describe_price for a stored amount string."""
    return describe_price(Decimal(amount), currency, valuation)


def why_not_decide(
    status: str, tier: Tier, customer_id: str, approver_id: str, approver_level: Tier | None
) -> str | None:
    """Why this caller may not decide an approval in this state, or None when they may.

    The inbox's `can_decide`; POST .../decisions refuses for the same reasons (check_can_decide).
    """
    if approver_level is None:
        return f"{approver_id} is not an approver"
    if status == "expired":
        return "the approval expired"
    if status != "pending":
        return f"already {status}"
    return authority_problem(
        stage_tier=tier,
        approver_id=approver_id,
        approver_role=approver_level,
        customer_id=customer_id,
    )


def check_can_decide(
    view: ApprovalView | None, order_id: str, approver_id: str, approver_role: Tier
) -> ApprovalView:
    """Raise why this approver may not decide this order's current stage; else the view."""
    if view is None:
        raise UnknownApproval(f"no approval is waiting for order {order_id!r}")
    if view.status == "expired":
        raise ApprovalExpired(f"the approval of order {order_id} expired")
    if view.status != "pending":
        raise AlreadyDecided(f"order {order_id} was already {view.status} by {view.decided_by}")
    problem = authority_problem(
        stage_tier=view.tier,
        approver_id=approver_id,
        approver_role=approver_role,
        customer_id=view.customer_id,
    )
    if problem:
        raise NotAuthorised(f"{problem} (order {order_id} is at the {view.tier.value} stage)")
    return view


def decision_time(view: ApprovalView) -> float | None:
    """Seconds from the approval's request to an approver's accepted decision (workflow time);
    None while nobody has decided, or when the policy decided (a timeout)."""
    if view.status == "pending":
        return None
    requested = next((e.at for e in view.log if e.kind == "requested"), None)
    accepted = next((e.at for e in reversed(view.log) if e.kind == "accepted"), None)
    if requested is None or accepted is None:
        return None
    return (accepted - requested).total_seconds()
