"""The order workflow's activities: every side effect of an order, idempotent.

Each one runs at least once (again after a crash before Dapr recorded its completion), so each
is safe to repeat: messages keep their ids, the order record only moves forward, and the
fulfilment is claimed (the first write wins).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from contracts.messages import (
    TRUSTED,
    ApprovalCancelled,
    ApprovalRequested,
    OrderPlaced,
    OrderStatusChanged,
)
from contracts.topics import APPROVAL_CANCELLATIONS, APPROVAL_REQUESTS, ORDER_STATUS
from control.instances import track_activity
from orders.readmodel import OrderRecord, load, save, save_all
from orders.workflows import (
    ADVANCE_ORDER,
    CLOSE_APPROVAL,
    FULFIL_ORDER,
    PUBLISH_STATUS,
    RECORD_ORDER,
    REQUEST_APPROVAL,
)
from plumbing.gateway import Gateway

log = logging.getLogger(__name__)


def _change(learnt: dict[str, Any], msg: OrderStatusChanged) -> OrderRecord:
    """The order record's change for a status step: what the step learnt, and the status."""
    return OrderRecord.model_validate(
        learnt
        | {
            "order_id": msg.order_id,
            "status": msg.status.value,
            "detail": msg.detail,
            "updated_at": msg.at,
        }
    )


def make_activities(gateway: Gateway) -> dict[str, Callable[..., Any]]:
    """The order activities, bound to this app's gateway; registered by name."""

    def publish_order_status(ctx: Any, data: dict[str, Any]) -> None:
        """Record the step in the order record, then announce it on `order-status`."""
        step = dict(data)
        learnt = step.pop("record", None) or {}  # absent in steps scheduled before records
        msg = OrderStatusChanged.model_validate(step)
        save(gateway.state, _change(learnt, msg))
        if msg.customer_id is None and (record := load(gateway.state, msg.order_id)):
            msg = msg.model_copy(update={"customer_id": record.customer_id})  # for the e-mail
        gateway.publisher.publish(ORDER_STATUS, msg)
        gateway.metrics.order_status(msg.status.value)

    def record_order(ctx: Any, data: dict[str, Any]) -> None:
        save(gateway.state, OrderRecord.model_validate(data))

    def request_approval(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(
            APPROVAL_REQUESTS, ApprovalRequested.model_validate(data, context=TRUSTED)
        )

    def close_approval(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(APPROVAL_CANCELLATIONS, ApprovalCancelled.model_validate(data))

    def fulfil_order(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        order = OrderPlaced.model_validate(data, context=TRUSTED)
        record = {
            "order_id": order.order_id,
            "amount": str(order.amount),
            "currency": order.currency,
            "items": [i.model_dump() for i in order.items],
        }
        # An activity runs at least once (again after a crash before its completion was
        # recorded): the first run's record wins, and a repeat ships nothing twice.
        key = f"fulfilment:{order.order_id}"
        if not gateway.state.claim(key, record):
            log.info("order %s was fulfilled already; not again", order.order_id)
            return dict(gateway.state.get(key)[0] or record)
        return record

    def advance_order(ctx: Any, actions: list[dict[str, Any]]) -> None:
        """Consecutive steps of one order, in one activity: fulfil, write every status to the
        record (one read-modify-write), then publish the statuses and messages in their order,
        then update the instance index. Each part is idempotent, so a retry repeats nothing
        that mattered: the fulfilment is claimed, the record only moves forward, every message
        keeps its id."""
        todo = [(a["kind"], a["data"]) for a in actions]
        for kind, data in todo:
            if kind == "fulfil":
                fulfil_order(ctx, data)
        said: list[tuple[dict[str, Any], OrderStatusChanged]] = []
        for kind, data in todo:
            if kind == "status":
                step = dict(data)
                learnt = step.pop("record", None) or {}
                said.append((learnt, OrderStatusChanged.model_validate(step)))
        stored = save_all(gateway.state, [_change(*s) for s in said]) if said else None
        announcements = iter(msg for _, msg in said)
        for kind, data in todo:
            if kind == "status":
                msg = next(announcements)
                if msg.customer_id is None and stored is not None:
                    msg = msg.model_copy(update={"customer_id": stored.customer_id})
                gateway.publisher.publish(ORDER_STATUS, msg)
                gateway.metrics.order_status(msg.status.value)
            elif kind == "request":
                request_approval(ctx, data)
            elif kind == "close":
                close_approval(ctx, data)
            elif kind == "track":
                track(ctx, data)

    track = track_activity(gateway)
    return {
        ADVANCE_ORDER: advance_order,
        PUBLISH_STATUS: publish_order_status,
        RECORD_ORDER: record_order,
        REQUEST_APPROVAL: request_approval,
        FULFIL_ORDER: fulfil_order,
        CLOSE_APPROVAL: close_approval,
    }
