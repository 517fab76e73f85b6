"""What to tell whom: turn a message into a notification. Pure rules, no I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from contracts.messages import ApprovalRequested, OrderStatusChanged
from contracts.money import describe_price


class Notification(BaseModel):
    """One notification; `id` is the id of the message that caused it."""

    id: str
    order_id: str
    audience: str  # "approvers:manager", "approvers:vp" or "customer"
    subject: str
    text: str
    at: datetime


def for_approval_request(msg: ApprovalRequested) -> Notification:
    return Notification(
        id=msg.message_id,
        order_id=msg.order_id,
        audience=f"approvers:{msg.tier.value}",
        subject=f"Approval needed: order {msg.order_id}",
        text=(
            f"Order {msg.order_id} for {describe_price(msg.amount, msg.currency, msg.valuation)} "
            f"needs {msg.tier.value} "
            f"approval by {msg.due_at.isoformat()} (stage {msg.stage}). {msg.reason}"
        ).strip(),
        at=msg.due_at,
    )


def for_status_change(msg: OrderStatusChanged) -> Notification:
    return Notification(
        id=msg.message_id,
        order_id=msg.order_id,
        audience="customer",
        subject=f"Order {msg.order_id}: {msg.status.value.replace('_', ' ')}",
        text=f"Your order {msg.order_id} is now {msg.status.value}. {msg.detail}".strip(),
        at=msg.at,
    )
