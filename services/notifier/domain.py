"""What to tell whom: turn a message into a notification. Pure rules, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from contracts.messages import (
    ApprovalReminded,
    ApprovalRequested,
    OrderStatus,
    OrderStatusChanged,
    Tier,
)
from contracts.money import describe_price
from contracts.timestamps import UtcDatetime


class Notification(BaseModel):
    """One notification; `id` is the id of the message that caused it.

    `at` is when it happened: when the notifier sent an approver's, when the status changed
    for a customer's. An approver's carries the decision's deadline in `due_at` and what the
    e-mail shows (amount, tier, stage, why); a customer's, whom it is for (`customer_id`).
    """

    id: str
    order_id: str
    audience: str  # "approvers:manager", "approvers:vp" or "customer"
    subject: str
    text: str
    at: UtcDatetime
    due_at: UtcDatetime | None = None
    amount_text: str | None = None
    tier: Tier | None = None
    stage: int | None = None
    why: str = ""
    customer_id: str | None = None
    status: OrderStatus | None = None
    reminder: bool = False


def for_approval_request(msg: ApprovalRequested, sent_at: datetime) -> Notification:
    """The approvers' notification: what, for how much, at which level, by when."""
    due = msg.due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    price = describe_price(msg.amount, msg.currency, msg.valuation)
    text = (
        f"Order {msg.order_id} for {price} "
        f"needs {msg.tier.value} approval by {due} (stage {msg.stage})."
    )
    # The first stage's reason restates the amount and level; only a reason that adds
    # something (an escalation) is appended.
    why = msg.reason if msg.reason and msg.reason not in text else ""
    if why:
        text += f" {why}"
    reminder = isinstance(msg, ApprovalReminded)
    return Notification(
        id=msg.message_id,
        order_id=msg.order_id,
        audience=f"approvers:{msg.tier.value}",
        subject=f"{'Reminder: approval' if reminder else 'Approval'} needed: order {msg.order_id}",
        text=text,
        at=sent_at,
        due_at=msg.due_at,
        amount_text=price,
        tier=msg.tier,
        stage=msg.stage,
        why=why,
        reminder=reminder,
    )


# What a customer is told, per status. Fixed texts on purpose: the status detail may name the
# approver or quote their reason, which stay internal (the order workflow and audit log keep them).
CUSTOMER_TEXT: dict[OrderStatus, str] = {
    OrderStatus.RECEIVED: "We have received your order {order_id}.",
    OrderStatus.AWAITING_APPROVAL: "Your order {order_id} is waiting for approval.",
    OrderStatus.APPROVED: "Your order {order_id} has been approved.",
    OrderStatus.REJECTED: "Your order {order_id} was not approved.",
    OrderStatus.EXPIRED: "Your order {order_id} was not approved in time and has been closed.",
    OrderStatus.COMPLETED: "Your order {order_id} is complete.",
    OrderStatus.FAILED: "We could not complete your order {order_id}.",
    OrderStatus.CANCELLED: "Your order {order_id} has been cancelled.",
}


def for_status_change(msg: OrderStatusChanged) -> Notification:
    """The customer's notification: a fixed text per status, never the status detail."""
    return Notification(
        id=msg.message_id,
        order_id=msg.order_id,
        audience="customer",
        subject=f"Order {msg.order_id}: {msg.status.value.replace('_', ' ')}",
        text=CUSTOMER_TEXT[msg.status].format(order_id=msg.order_id),
        at=msg.at,
        customer_id=msg.customer_id,
        status=msg.status,
    )
